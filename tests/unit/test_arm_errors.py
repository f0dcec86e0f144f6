"""The ARM error table (after ASO's error classifier): which answers are worth waiting for (Reconciling) and which
need a human (Stalled, Azure's code as the reason). Codes from the ARM common error reference and the
Microsoft.MachineLearningServices / Batch error examples in azure-rest-api-specs."""

from __future__ import annotations

import pytest

from amlops.azure.errors import classify

pytestmark = pytest.mark.unit


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
        ("an unknown 408 is worth another try", None, 408, "retryable"),
        ("a known code wins over its status", "PoolNotSteady", 409, "retryable"),
    ],
)
def test_classify(reason: str, code: str | None, status: int | None, expected: str) -> None:
    assert classify(code, status) == expected, reason
