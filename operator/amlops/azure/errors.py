"""The one Azure error funnel: one table (after ASO's error_classifier.go), one function, one context manager.

Turns an ``azure.core`` exception into the engine's vocabulary: :class:`RetryableError` (look again after
Retry-After or a backoff) or :class:`TerminalError` (Stalled, reason = Azure's code). Every adapter call runs
inside :func:`azure_errors`. Anything else (a ``KeyError`` in our code, an answer we cannot parse) is not Azure's
failure and is not waited for as one: it leaves the funnel untouched and the engine reports it as ``InternalError``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    DecodeError,
    HttpResponseError,
    IncompleteReadError,
    ServiceRequestError,
    ServiceResponseError,
)

from amlops import retry_after as retry_after_header
from amlops.reconcile.errors import ReconcileError, RetryableError, TerminalError

Class = Literal["retryable", "terminal"]

ARM_CODES: dict[str, Class] = {
    # Transient: Azure will get there without us.
    "TooManyRequests": "retryable",
    "AnotherOperationInProgress": "retryable",
    "Conflict": "retryable",
    "AllocationFailed": "retryable",
    "InternalServerError": "retryable",
    "ServerBusy": "retryable",
    "ServiceUnavailable": "retryable",
    "GatewayTimeout": "retryable",
    "OperationTimedOut": "retryable",
    "PoolNotSteady": "retryable",
    # An If-Match write lost to another writer (Batch, Blob storage): read again and decide again.
    "ConditionNotMet": "retryable",
    # Until a human acts (quota raised, role granted, parent created): the work queue rechecks slowly.
    "QuotaExceeded": "terminal",
    "ResourceQuotaExceeded": "terminal",
    "ClusterMinNodesExceedCoreQuota": "terminal",
    "JobNodeCountExceedsCoreQuota": "terminal",
    "AuthorizationFailed": "terminal",
    "AuthenticationFailed": "terminal",
    "AccountNotFound": "terminal",
    "InsufficientAccountPermissions": "terminal",
    "InvalidAuthenticationToken": "terminal",
    "ParentResourceNotFound": "terminal",
    "ResourceGroupNotFound": "terminal",
    "SubscriptionNotFound": "terminal",
    "MissingSubscriptionRegistration": "terminal",
    "ScopeLocked": "terminal",
    "RequestDisallowedByPolicy": "terminal",
    # Until the spec changes.
    "BadRequest": "terminal",
    "InvalidParameter": "terminal",
    "InvalidParameterValue": "terminal",
    "MissingRequiredParameter": "terminal",
    "PropertyChangeNotAllowed": "terminal",
    "SkuNotAvailable": "terminal",
    "InvalidRequestContent": "terminal",
    "UserError": "terminal",
    "ValidationError": "terminal",
}

# Stable reasons amlops gives a failure whatever code Azure chose for it (design.md §3: a reason a human and an
# alert can rely on). Azure's ML RP reports one cause under several codes: a quota shortfall comes back as
# BadRequest "The specified subscription has a total vCPU quota of 4 and cannot accomodate for at least 1
# requested ... node which maps to 24 vCPUs" (Azure/mlops-v2#81, microsoft/InnerEye-DeepLearning#253), as
# "... has a Standard NC family vCPU quota of 0 and cannot accomodate ..." (dotnet/machinelearning-modelbuilder
# #2140), as ClusterMinNodesExceedCoreQuota with the same text, or as QuotaExceeded; an unsupported size as
# InvalidPropertyValue "The specified value Standard_B2s for property Cluster.Properties.VMSize is not a supported
# VM size" (Azure/MachineLearningNotebooks#1169, microsoft/az-deep-batch-score#4).
QUOTA_EXCEEDED = "QuotaExceeded"
VM_SIZE_NOT_AVAILABLE = "VmSizeNotAvailable"
_QUOTA_CODES = frozenset(
    {"QuotaExceeded", "ResourceQuotaExceeded", "ClusterMinNodesExceedCoreQuota", "JobNodeCountExceedsCoreQuota"}
)
# "... family vCPU quota of 0 ...", "exceeding approved standardNCADSA100v4Family Cores quota", "exceeding quota
# limits of Core": a quota named in the message, whatever the code around it.
_QUOTA_MESSAGE = re.compile(r"\bvCPU quota\b|\bexceeding\b.{0,80}?\bquota", re.IGNORECASE)
_VM_SIZE_MESSAGE = re.compile(r"not a supported VM size", re.IGNORECASE)

DEFAULT_RETRY = 10.0
THROTTLED = "Throttled"
INSECURE_ENDPOINT = "InsecureEndpoint"
# azure-core's BearerTokenCredentialPolicy refuses, before sending anything, to put a token on a plain-http URL:
# no retry can change that, only another endpoint (or a shared key) can.
_BEARER_OVER_HTTP = "Bearer token authentication is not permitted for non-TLS"
# No (whole) answer: the connection failed, broke mid-body or timed out. Raw socket errors and timeouts too, in
# case a transport does not wrap them in azure-core's own.
_NO_ANSWER = (IncompleteReadError, ServiceRequestError, ServiceResponseError, ConnectionError, TimeoutError)


def classify(code: str | None, status: int | None) -> Class:
    """A known code decides; else the status: throttling (429), a timeout (408), a server error (5xx) or no answer
    at all pass with time; any other 4xx is the request's fault and repeating it changes nothing (design.md §4)."""
    if code and code in ARM_CODES:
        return ARM_CODES[code]
    if status is None or status in (408, 429) or status >= 500:
        return "retryable"
    return "terminal" if status >= 400 else "retryable"


def stable_reason(code: str, message: str) -> str:
    """amlops' own reason for Azure's ``code`` and ``message``: ``QuotaExceeded`` for every quota shortfall,
    ``VmSizeNotAvailable`` for a size the service refuses, else Azure's code as it is."""
    if code in _QUOTA_CODES or _QUOTA_MESSAGE.search(message):
        return QUOTA_EXCEEDED
    if _VM_SIZE_MESSAGE.search(message):
        return VM_SIZE_NOT_AVAILABLE
    return code


def failure_reason(code: str, message: str) -> tuple[str, str]:
    """(reason, message) for a Stalled condition: :func:`stable_reason`, and Azure's own code kept in front of
    its message whenever the reason is not that code (nothing of what Azure said is lost)."""
    reason = stable_reason(code, message)
    return reason, message if reason == code else f"{code}: {message}"


def arm_error_text(error: Any) -> str:
    """An ARM error object's message with its details after it: the ML RP puts what a human needs there, e.g.
    ``{"code": "SupportedVMSizes", "message": "STANDARD_D1,STANDARD_D2,..."}`` after "is not a supported VM
    size" (Azure/MachineLearningNotebooks#1169)."""
    if not isinstance(error, dict):
        return ""
    message = str(error.get("message") or "")
    details = [d for d in error.get("details") or [] if isinstance(d, dict) and d.get("message")]
    notes = "; ".join(f"{d.get('code') or 'Detail'}: {d['message']}" for d in details)
    return f"{message} ({notes})" if notes and message else message or notes


def retry_after(error: HttpResponseError) -> float | None:
    """The delay Azure asks for (capped, garbage ignored: ``amlops.retry_after``)."""
    headers: Any = getattr(error.response, "headers", None)
    return retry_after_header.from_headers(headers)


def error_code(error: HttpResponseError) -> str | None:
    """ARM puts the code under ``error``; the Batch data plane answers OData (``BatchError`` in ``model``); Blob
    storage's SDK sets ``error_code`` from the ``x-ms-error-code`` header (``ContainerNotFound``)."""
    for inner in (getattr(error, "error", None), getattr(error, "model", None)):
        code = getattr(inner, "code", None)
        if code:
            return str(code)
    code = getattr(error, "error_code", None)
    return str(code) if code else None


def error_message(error: HttpResponseError) -> str:
    inner = getattr(error, "error", None)
    if message := getattr(inner, "message", None):
        return str(message)
    model_message = getattr(getattr(error, "model", None), "message", None)
    if value := getattr(model_message, "value", None):
        return _without_trailer(str(value))
    return _without_trailer(error.message or str(error))


def _without_trailer(message: str) -> str:
    """Batch and Blob storage end a message with request id, time and code lines: noise in a condition."""
    return message.split("\nRequestId:", 1)[0]


@contextmanager
def azure_errors() -> Iterator[None]:
    """Run Azure calls inside: Azure's failure to answer (or its refusal) leaves as the engine's Retryable/Terminal
    error. Answers that are facts for the caller (not found, exists) are caught inside it, before the funnel.

    Not translated (see :func:`is_azure_failure`): anything else, e.g. our own ``KeyError``/``TypeError``, or an
    answer azure-core could not decode. Waiting for Azure would never fix those; the engine shows them as
    ``InternalError`` with their traceback in the log.
    """
    try:
        yield
    except Exception as error:
        if not is_azure_failure(error):
            raise
        raise translate(error) from error


def is_azure_failure(error: BaseException) -> bool:
    """Whether ``error`` is Azure's doing (an HTTP error answer, no answer, a body cut short, azure-core giving up
    after its retries) rather than ours (a bug, a stream misused, an answer we cannot decode)."""
    if isinstance(error, _NO_ANSWER):
        return True
    if isinstance(error, DecodeError):
        return False  # an answer that does not parse: waiting would read the same one again
    if isinstance(error, HttpResponseError):
        return True
    # A bare AzureError: azure-core's "Maximum retries exceeded", Blob storage's checksum mismatch. Its
    # subclasses outside the above (StreamConsumedError, ResponseNotReadError...) are misuse of the SDK.
    return type(error) is AzureError


def translate(error: Exception) -> ReconcileError:
    """An Azure failure (:func:`is_azure_failure`) → the engine's error vocabulary."""
    if isinstance(error, ClientAuthenticationError) and (error.status_code is None or error_code(error) is None):
        # No token at all (azure-identity's refusal: the identity platform's AADSTS code is in the message), as
        # opposed to a token Azure refused (ARM's own code, e.g. InvalidAuthenticationToken).
        return TerminalError("AuthenticationFailed", str(error).splitlines()[0])
    if isinstance(error, ServiceRequestError) and _BEARER_OVER_HTTP in str(error):
        return TerminalError(
            INSECURE_ENDPOINT,
            "a Microsoft Entra ID token is sent only over https: use an https endpoint (or a shared key)",
        )
    if isinstance(error, _NO_ANSWER):
        return RetryableError("WaitingForAzure", f"Azure unreachable: {error}", DEFAULT_RETRY)
    if isinstance(error, HttpResponseError):
        status = error.status_code
        code = error_code(error) or (THROTTLED if status == 429 else f"Http{status}")
        message = error_message(error)
        if status == 429:
            return RetryableError(THROTTLED, message, retry_after(error) or DEFAULT_RETRY)
        if classify(code, status) == "retryable":
            return RetryableError(code, message, retry_after(error) or DEFAULT_RETRY)
        return TerminalError(*failure_reason(code, message))
    # A bare AzureError: azure-core gave up after its retries, or a download failed its checksum.
    return RetryableError("WaitingForAzure", f"{type(error).__name__}: {error}", DEFAULT_RETRY)
