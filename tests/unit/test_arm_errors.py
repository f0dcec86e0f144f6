"""The ARM error table (after ASO's error classifier): which answers are worth waiting for (Reconciling) and which
need a human (Stalled, Azure's code as the reason). Codes from the ARM common error reference and the
Microsoft.MachineLearningServices / Batch error examples in azure-rest-api-specs; design.md §4: 429, 5xx,
connection errors and timeouts pass with time, any other 4xx does not.

And the funnel (``azure_errors``): only Azure's failures become Retryable/Terminal; a bug in amlops, or an answer
it cannot decode, leaves untouched so the engine reports it as ``InternalError`` instead of waiting for Azure."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import SimpleNamespace

import pytest
from azure.core.exceptions import (
    AzureError,
    DecodeError,
    HttpResponseError,
    IncompleteReadError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestTimeoutError,
    ServiceResponseTimeoutError,
    StreamConsumedError,
)

from amlops.azure import batch, batch_jobs
from amlops.azure.errors import (
    arm_error_text,
    azure_errors,
    classify,
    failure_reason,
    is_azure_failure,
    translate,
)
from amlops.reconcile.errors import ReconcileError, RetryableError, TerminalError

pytestmark = pytest.mark.unit


def _http(status: int, code: str | None = None, message: str = "refused") -> HttpResponseError:
    error = HttpResponseError(message=message)
    error.status_code = status
    if code:
        error.error_code = code  # type: ignore[attr-defined]  # as azure-storage-blob sets it
    return error


@pytest.mark.parametrize(
    ("reason", "code", "status", "expected"),
    [
        ("ARM throttling", "TooManyRequests", 429, "retryable"),
        ("a 429 without a code", None, 429, "retryable"),
        ("another operation holds the resource", "AnotherOperationInProgress", 409, "retryable"),
        ("a Conflict is the same, for computes", "Conflict", 409, "retryable"),
        ("no capacity right now", "AllocationFailed", 400, "retryable"),
        ("server errors", "InternalServerError", 500, "retryable"),
        ("any 5xx without a code", None, 503, "retryable"),
        ("no answer at all", None, None, "retryable"),
        ("quota needs a human", "QuotaExceeded", 400, "terminal"),
        ("a missing role needs a human", "AuthorizationFailed", 403, "terminal"),
        ("a missing workspace needs a human", "ParentResourceNotFound", 404, "terminal"),
        ("a policy denial needs a human", "RequestDisallowedByPolicy", 403, "terminal"),
        ("a bad spec needs a new spec", "InvalidPropertyValue", 400, "terminal"),
        ("an unknown 400 is terminal", "SomethingNew", 400, "terminal"),
        ("an unknown 404 is terminal", None, 404, "terminal"),
        ("an unknown 422 is terminal", None, 422, "terminal"),
        ("a request timeout (408) is worth another try", None, 408, "retryable"),
        ("a known code wins over its status", "PoolNotSteady", 409, "retryable"),
        ("an unknown 405: the same request is refused again", None, 405, "terminal"),
        ("an unknown 412 (a precondition without a code) is terminal", None, 412, "terminal"),
        ("an unknown 413: the same body stays too large", "RequestBodyTooLarge", 413, "terminal"),
        ("an unknown 410 is terminal", None, 410, "terminal"),
        ("Batch/Blob If-Match lost to another writer: read again", "ConditionNotMet", 412, "retryable"),
        ("a 502 from a gateway without a code", None, 502, "retryable"),
        ("an unknown code on a 5xx is still a server error", "SomethingBroke", 500, "retryable"),
        ("an answer that is no error status at all (unexpected 202)", None, 202, "retryable"),
    ],
)
def test_classify(reason: str, code: str | None, status: int | None, expected: str) -> None:
    assert classify(code, status) == expected, reason


@pytest.mark.parametrize(
    ("reason", "raised", "kind", "code"),
    [
        ("throttled, whatever the code", _http(429, "TooManyRequests"), RetryableError, "Throttled"),
        ("a 503 waits, keeping Azure's code", _http(503, "ServerBusy"), RetryableError, "ServerBusy"),
        ("a 500 without a code is named after its status", _http(500), RetryableError, "Http500"),
        ("a 405 without a code stalls, named after its status", _http(405), TerminalError, "Http405"),
        (
            "a 413 stalls with the service's code",
            _http(413, "RequestBodyTooLarge"),
            TerminalError,
            "RequestBodyTooLarge",
        ),
        ("a quota stalls with Azure's code", _http(400, "QuotaExceeded"), TerminalError, "QuotaExceeded"),
        ("a 412 lost race is looked at again", _http(412, "ConditionNotMet"), RetryableError, "ConditionNotMet"),
        ("no answer in time (sending)", ServiceRequestTimeoutError("timed out"), RetryableError, "WaitingForAzure"),
        ("no answer in time (reading)", ServiceResponseTimeoutError("timed out"), RetryableError, "WaitingForAzure"),
        ("a body cut short is a broken connection", IncompleteReadError("cut"), RetryableError, "WaitingForAzure"),
        (
            "a raw socket error a transport did not wrap",
            ConnectionResetError("reset"),
            RetryableError,
            "WaitingForAzure",
        ),
        ("a raw timeout a transport did not wrap", TimeoutError(), RetryableError, "WaitingForAzure"),
        (
            "azure-core gave up after its own retries",
            AzureError("Maximum retries exceeded."),
            RetryableError,
            "WaitingForAzure",
        ),
    ],
)
def test_translate(reason: str, raised: Exception, kind: type[ReconcileError], code: str) -> None:
    assert is_azure_failure(raised), reason
    with pytest.raises(kind) as caught, azure_errors():
        raise raised
    assert caught.value.reason == code, reason
    assert caught.value.__cause__ is raised, "the SDK's exception stays reachable for the log"
    assert type(translate(raised)) is kind


TOTAL = (
    "The specified subscription has a total vCPU quota of 0 and cannot accomodate for at least 1 requested managed "
    "compute node which maps to 2 vCPUs."
)
FAMILY = (
    "The specified subscription has a Standard NC family vCPU quota of 0 and cannot accomodate for at least 1 "
    "requested managed compute nodes which maps to 12 vCPUs. Talk to your Subscription Admin or refer to "
    "https://docs.microsoft.com/azure/machine-learning/how-to-manage-quotas#request-quota-increases to increase "
    "the family quota"
)
SIZE = (
    "The specified value Standard_B2s for property Cluster.Properties.VMSize is not a supported VM size. See "
    "additional details for supported VM sizes."
)


@pytest.mark.parametrize(
    ("source", "code", "message", "reason"),
    [
        ("Azure/mlops-v2#81: the subscription's total, as BadRequest", "BadRequest", TOTAL, "QuotaExceeded"),
        ("dotnet/machinelearning-modelbuilder#2140: a family's quota", "BadRequest", FAMILY, "QuotaExceeded"),
        (
            "the same text under ClusterMinNodesExceedCoreQuota",
            "ClusterMinNodesExceedCoreQuota",
            FAMILY,
            "QuotaExceeded",
        ),
        ("the emulator's former code, and any other client's", "QuotaExceeded", "no cores", "QuotaExceeded"),
        ("mslearn-dp100#35: a job's node count", "JobNodeCountExceedsCoreQuota", "…", "QuotaExceeded"),
        (
            "scylla-cluster-tests#12948: CRP's wording under OperationNotAllowed",
            "OperationNotAllowed",
            "Operation could not be completed as it results in exceeding approved standardFSv2Family Cores quota.",
            "QuotaExceeded",
        ),
        (
            "MachineLearningNotebooks#1169: a size the cluster refuses",
            "InvalidPropertyValue",
            SIZE,
            "VmSizeNotAvailable",
        ),
        (
            "another InvalidPropertyValue keeps Azure's code",
            "InvalidPropertyValue",
            "maxNodeCount is negative",
            "InvalidPropertyValue",
        ),
        ("a BadRequest about something else keeps Azure's code", "BadRequest", "The request is invalid", "BadRequest"),
    ],
)
def test_failure_reason(source: str, code: str, message: str, reason: str) -> None:
    """amlops' own, stable reason; Azure's code stays in the message whenever it is not the reason."""
    got_reason, got_message = failure_reason(code, message)
    assert got_reason == reason, source
    assert got_message == (message if reason == code else f"{code}: {message}"), source


def test_a_quota_refused_at_once_stalls_as_quota_exceeded_too() -> None:
    """A synchronous 400 (ClusterMinNodesExceedCoreQuota on a create, or a BadRequest naming a quota) gets the same
    reason as an asynchronous failure."""
    with pytest.raises(TerminalError) as caught, azure_errors():
        raise _http(400, "BadRequest", TOTAL)
    assert (caught.value.reason, caught.value.message) == ("QuotaExceeded", f"BadRequest: {TOTAL}")


def test_arm_error_text_keeps_the_details() -> None:
    """The supported sizes come in ``details`` (MachineLearningNotebooks#1169), and a human needs them."""
    error = {
        "code": "InvalidPropertyValue",
        "message": SIZE,
        "details": [{"code": "SupportedVMSizes", "message": "STANDARD_D1,STANDARD_D2"}],
    }
    assert arm_error_text(error) == f"{SIZE} (SupportedVMSizes: STANDARD_D1,STANDARD_D2)"
    assert arm_error_text({"code": "X", "message": "m", "details": []}) == "m"
    assert arm_error_text(None) == ""


@pytest.mark.parametrize(
    ("reason", "raised"),
    [
        ("a KeyError in adapter code", KeyError("provisioningState")),
        ("a TypeError in adapter code", TypeError("'NoneType' object is not subscriptable")),
        ("an AttributeError in adapter code", AttributeError("'dict' object has no attribute 'as_dict'")),
        ("a body our own code cannot parse", ValueError("Expecting value: line 1 column 1 (char 0)")),
        ("a body azure-core cannot decode", DecodeError("cannot deserialize")),
        ("an SDK stream used twice", StreamConsumedError(SimpleNamespace(request="GET /pools"))),
        ("the engine's own vocabulary passes through as it is", TerminalError("InvalidSpec", "bad")),
    ],
)
def test_what_is_not_azure_failing_leaves_the_funnel_untouched(reason: str, raised: Exception) -> None:
    """Waiting for Azure never fixes these: translated, they were retried as ``WaitingForAzure`` for ever."""
    assert not is_azure_failure(raised), reason
    with pytest.raises(type(raised)) as caught, azure_errors():
        raise raised
    assert caught.value is raised, reason


def _raising(error: Exception) -> Callable[[], Awaitable[None]]:
    async def call() -> None:
        raise error

    return call


@pytest.mark.parametrize(
    ("reason", "raised", "expected"),
    [
        ("exists already: a fact, no error", ResourceExistsError("exists"), False),
        ("exists, said with Batch's code on a plain 409", _http(409, "PoolExists"), False),
    ],
)
async def test_create_if_absent_keeps_its_facts(reason: str, raised: Exception, expected: bool) -> None:
    assert await batch.create_if_absent(_raising(raised), "PoolExists") is expected, reason


async def test_an_adapter_programming_error_is_not_waiting_for_azure() -> None:
    """A bug inside an adapter's call (here a KeyError while building the Batch create) surfaced as
    ``RetryableError("WaitingForAzure")`` and was retried for ever; it now reaches the engine as itself."""
    with pytest.raises(KeyError):
        await batch.create_if_absent(_raising(KeyError("id")), "PoolExists")
    with pytest.raises(TypeError):
        await batch_jobs._ignoring_ended(_raising(TypeError("unhashable type: 'dict'")))


async def test_an_ended_job_is_a_fact_and_other_conflicts_are_not() -> None:
    await batch_jobs._ignoring_ended(_raising(ResourceNotFoundError("gone")))
    await batch_jobs._ignoring_ended(_raising(_http(409, "JobCompleted")))
    with pytest.raises(TerminalError) as caught:
        await batch_jobs._ignoring_ended(_raising(_http(409, "JobBeingCreated")))
    assert caught.value.reason == "JobBeingCreated"
