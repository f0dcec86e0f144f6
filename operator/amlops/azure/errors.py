"""ARM error classification: one table (after ASO's error_classifier.go), one function.

Turns an ``azure.core`` exception into the engine's vocabulary: :class:`RetryableError` (look again after
Retry-After or a backoff) or :class:`TerminalError` (Stalled, reason = Azure's code).
"""

from __future__ import annotations

from typing import Any, Literal

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
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
    # Until a human acts (quota raised, role granted, parent created): the timer rechecks slowly.
    "QuotaExceeded": "terminal",
    "ResourceQuotaExceeded": "terminal",
    "ClusterMinNodesExceedCoreQuota": "terminal",
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

DEFAULT_RETRY = 10.0
THROTTLED = "Throttled"
INSECURE_ENDPOINT = "InsecureEndpoint"
# azure-core's BearerTokenCredentialPolicy refuses, before sending anything, to put a token on a plain-http URL:
# no retry can change that, only another endpoint (or a shared key) can.
_BEARER_OVER_HTTP = "Bearer token authentication is not permitted for non-TLS"


def classify(code: str | None, status: int | None) -> Class:
    if code and code in ARM_CODES:
        return ARM_CODES[code]
    if status == 429 or status is None or status >= 500:
        return "retryable"
    return "terminal" if status in (400, 401, 403, 404, 409, 422) else "retryable"


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


def translate(error: Exception) -> ReconcileError:
    """Any exception from an Azure call → the engine's error vocabulary."""
    if isinstance(error, ClientAuthenticationError) and (error.status_code is None or error_code(error) is None):
        # No token at all (azure-identity's refusal: the identity platform's AADSTS code is in the message), as
        # opposed to a token Azure refused (ARM's own code, e.g. InvalidAuthenticationToken).
        return TerminalError("AuthenticationFailed", str(error).splitlines()[0])
    if isinstance(error, ServiceRequestError) and _BEARER_OVER_HTTP in str(error):
        return TerminalError(
            INSECURE_ENDPOINT,
            "a Microsoft Entra ID token is sent only over https: use an https endpoint (or a shared key)",
        )
    if isinstance(error, ServiceRequestError | ServiceResponseError):
        return RetryableError("WaitingForAzure", f"Azure unreachable: {error}", DEFAULT_RETRY)
    if isinstance(error, HttpResponseError):
        status = error.status_code
        code = error_code(error) or (THROTTLED if status == 429 else f"Http{status}")
        message = error_message(error)
        if status == 429:
            return RetryableError(THROTTLED, message, retry_after(error) or DEFAULT_RETRY)
        if classify(code, status) == "retryable":
            return RetryableError(code, message, retry_after(error) or DEFAULT_RETRY)
        return TerminalError(code, message)
    return RetryableError("WaitingForAzure", f"{type(error).__name__}: {error}", DEFAULT_RETRY)
