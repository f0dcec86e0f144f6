"""The error funnel: which azure-core exceptions wait and retry, which stall until a human acts."""

from __future__ import annotations

from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError
from azure.core.pipeline import PipelineContext, PipelineRequest
from azure.core.pipeline.policies import BearerTokenCredentialPolicy
from azure.core.rest import HttpRequest

from amlops.azure.errors import INSECURE_ENDPOINT, translate
from amlops.reconcile.errors import RetryableError, TerminalError

pytestmark = pytest.mark.unit


class _Token:
    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("t", 2**31)


def _bearer_over_http() -> ServiceRequestError:
    """What azure-core's own bearer policy raises for a plain-http URL (before any byte is sent)."""
    policy = BearerTokenCredentialPolicy(_Token(), "https://batch.core.windows.net/.default")
    with pytest.raises(ServiceRequestError) as raised:
        policy.on_request(PipelineRequest(HttpRequest("GET", "http://127.0.0.1:1/acct/pools"), PipelineContext(None)))
    return raised.value


def test_a_token_refused_for_a_plain_http_endpoint_stalls_instead_of_retrying_forever() -> None:
    """An http Batch endpoint with Entra ID credentials can never work: Stalled, not WaitingForAzure."""
    error = translate(_bearer_over_http())
    assert isinstance(error, TerminalError)
    assert error.reason == INSECURE_ENDPOINT
    assert "https" in error.message


@pytest.mark.parametrize(
    "raised",
    [ServiceRequestError("Cannot connect to host 127.0.0.1:1"), ServiceResponseError("Connection reset by peer")],
    ids=["refused connection", "reset connection"],
)
def test_an_unreachable_endpoint_is_waited_for(raised: Exception) -> None:
    """Network trouble passes: retried with WaitingForAzure."""
    error = translate(raised)
    assert isinstance(error, RetryableError)
    assert error.reason == "WaitingForAzure"


def test_a_storage_error_keeps_its_code_and_drops_the_request_trailer() -> None:
    """azure-storage-blob raises with ``error_code`` from ``x-ms-error-code`` and a message ending in RequestId,
    Time and ErrorCode lines (as Azurite answered a listing of a missing container)."""
    raised = HttpResponseError(
        message="The specified container does not exist.\nRequestId:d16af0b8\nTime:2026-11-29T08:45:26.797Z\n"
        "ErrorCode:ContainerNotFound"
    )
    raised.status_code = 404
    # The storage SDK sets error_code on the exception it raises; azure-core's class does not declare it.
    raised.error_code = "ContainerNotFound"  # type: ignore[attr-defined]
    error = translate(raised)
    assert isinstance(error, TerminalError)
    assert (error.reason, error.message) == ("ContainerNotFound", "The specified container does not exist.")
