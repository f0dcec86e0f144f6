"""Shared-key authentication verified both ways, bearer tokens checked, errors as the service sends them."""

from __future__ import annotations

import base64

import aiohttp
import pytest
from azure.batch._patch import BatchSharedKeyAuthPolicy
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import HttpResponseError
from azure.core.pipeline import PipelineContext, PipelineRequest
from azure.core.rest import AsyncHttpResponse, HttpRequest

from amlops_emulator.batch.auth import authenticate
from amlops_emulator.batch.wire import BatchError
from amlops_emulator.credentials import EMULATOR_TOKEN
from amlops_emulator.seed import DEFAULT_BATCH_ACCOUNT, DEFAULT_BATCH_KEY
from tests.emulator.batch.conftest import BatchEmulator

pytestmark = pytest.mark.emulator

WRONG_KEY = base64.b64encode(b"not the account key").decode()


def sdk_signed(method: str, url: str, body: bytes | None = None) -> HttpRequest:
    """A request signed by the SDK's own policy, exactly as the client would send it."""
    headers = {"Content-Type": "application/json; odata=minimalmetadata"} if body is not None else {}
    request = HttpRequest(method, url, headers=headers, content=body)
    policy = BatchSharedKeyAuthPolicy(AzureNamedKeyCredential(DEFAULT_BATCH_ACCOUNT, DEFAULT_BATCH_KEY))
    policy.on_request(PipelineRequest(request, PipelineContext(None)))
    return request


def verify(request: HttpRequest, path: str, query: str) -> None:
    authenticate(
        request.headers.get("Authorization"),
        DEFAULT_BATCH_ACCOUNT,
        DEFAULT_BATCH_KEY,
        request.method,
        path,
        query,
        list(request.headers.items()),
    )


@pytest.mark.parametrize(
    ("method", "path", "query", "body"),
    [
        pytest.param("GET", "/amlopsbatch/pools/p1", "api-version=2025-06-01&timeOut=30", None, id="GetWithQuery"),
        pytest.param("POST", "/amlopsbatch/jobs", "api-version=2025-06-01", b'{"id":"j"}', id="PostWithBody"),
        pytest.param("POST", "/amlopsbatch/pools/p1/stopresize", "api-version=2025-06-01", None, id="PostNoBody"),
        pytest.param(
            "GET",
            "/amlopsbatch/jobs/j/tasks",
            "api-version=2025-06-01&%24filter=state%20eq%20%27active%27",
            None,
            id="EncodedFilter",
        ),
    ],
)
def test_sdk_signature_verifies_and_tampering_does_not(method: str, path: str, query: str, body: bytes | None) -> None:
    request = sdk_signed(method, f"http://127.0.0.1:1{path}?{query}", body)

    verify(request, path, query)
    with pytest.raises(BatchError) as tampered:
        verify(request, path, query + "&maxresults=1")

    assert tampered.value.status == 403
    assert tampered.value.code == "AuthenticationFailed"


async def test_sdk_client_with_right_key_is_accepted(emulator: BatchEmulator) -> None:
    async with emulator.client() as client:
        assert [p async for p in client.list_pools()] == []


async def test_wrong_key_is_403_authentication_failed(emulator: BatchEmulator) -> None:
    async with emulator.client(key=WRONG_KEY) as client:
        with pytest.raises(HttpResponseError) as raised:
            await client.get_pool("any")

    assert raised.value.status_code == 403
    assert raised.value.error is not None
    assert raised.value.error.code == "AuthenticationFailed"
    response = raised.value.response
    assert isinstance(response, AsyncHttpResponse), response  # the azure.core.rest response of a typespec client
    assert "Retry-After" not in response.headers
    body = response.json()
    assert body["values"][0]["key"] == "AuthenticationErrorDetail"


async def test_the_emulators_bearer_token_is_accepted_garbage_is_401_and_missing_auth_is_401(
    emulator: BatchEmulator,
) -> None:
    """AAD mode is checked as the ARM half checks it (one function: ``bearer_problem``). Batch answers a token it
    does not accept with ``AuthenticationFailed``, "Server failed to authenticate the request. Make sure the
    value of Authorization header is formed correctly." and the token's problem as ``AuthenticationErrorDetail``
    (azure-sdk-for-net issue 8026, a BatchClient with a wrong-audience AAD token), 401 with a bearer challenge."""
    url = f"{emulator.endpoint}/pools?api-version=2025-06-01"
    async with aiohttp.ClientSession() as http:
        async with http.get(url, headers={"Authorization": f"Bearer {EMULATOR_TOKEN}"}) as bearer:
            bearer_status = bearer.status
            listed = await bearer.json()
        async with http.get(url, headers={"Authorization": "Bearer eyJ0eXAiOiJKV1QifQ.e30.sig"}) as garbage:
            garbage_status, garbage_headers = garbage.status, garbage.headers
            refused = await garbage.json()
        async with http.get(url) as anonymous:
            anonymous_status = anonymous.status
            error = await anonymous.json()

    assert bearer_status == 200
    assert listed["value"] == []
    assert garbage_status == 401
    assert refused["code"] == "AuthenticationFailed"
    assert refused["message"]["value"].startswith("Server failed to authenticate the request.")
    assert refused["values"] == [{"key": "AuthenticationErrorDetail", "value": "The access token is invalid."}]
    assert garbage_headers["WWW-Authenticate"].startswith("Bearer ")
    assert "request-id" in garbage_headers
    assert "Retry-After" not in garbage_headers
    assert anonymous_status == 401
    assert error["code"] == "MissingRequiredHeader"
