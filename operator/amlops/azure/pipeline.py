"""An azure-core pipeline policy shared by every ARM client: metrics, rate-limit budget, Retry-After.

ARM reports what is left of a subscription's request budget in ``x-ms-ratelimit-remaining-subscription-*``
headers. We export it, and after a 429 hold back every request of that subscription until ``Retry-After``
has passed, so one throttled call does not become a storm of them (the SDK's retry policy honours
Retry-After for the call itself).
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import AsyncHTTPPolicy, AsyncRetryPolicy

from amlops import metrics, retry_after

_SUBSCRIPTION = re.compile(r"/subscriptions/([^/]+)", re.IGNORECASE)
_RATELIMIT_HEADERS = {
    "x-ms-ratelimit-remaining-subscription-reads": "reads",
    "x-ms-ratelimit-remaining-subscription-writes": "writes",
    "x-ms-ratelimit-remaining-subscription-deletes": "deletes",
}
# (method, path regex) → operation name, most specific first.
_OPERATIONS: tuple[tuple[str, re.Pattern[str], str], ...] = tuple(
    (method, re.compile(pattern, re.IGNORECASE), name)
    for method, pattern, name in (
        ("POST", r"/computes/[^/]+/listNodes$", "computes.listNodes"),
        ("POST", r"/computes/[^/]+/listKeys$", "computes.listKeys"),
        ("GET", r"/computes/[^/]+$", "computes.get"),
        ("PUT", r"/computes/[^/]+$", "computes.put"),
        ("PATCH", r"/computes/[^/]+$", "computes.patch"),
        ("DELETE", r"/computes/[^/]+$", "computes.delete"),
        ("GET", r"/computes$", "computes.list"),
        ("GET", r"/locations/[^/]+/usages$", "usages.list"),
        ("GET", r"/locations/[^/]+/quotas$", "quotas.list"),
        ("POST", r"/locations/[^/]+/updateQuotas$", "quotas.update"),
        ("GET", r"/locations/[^/]+/vmSizes$", "vmSizes.list"),
        ("GET", r"/(computeOperationsStatus|operationResults|operationsStatus)/", "operations.get"),
    )
)


def operation_of(method: str, path: str) -> str:
    for m, pattern, name in _OPERATIONS:
        if m == method and pattern.search(path):
            return name
    return f"{method.lower()}.other"


class ThrottleBudget:
    """Per-subscription hold after a 429; shared by every client of the process."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}

    def hold(self, subscription: str, seconds: float) -> None:
        self._until[subscription] = max(self._until.get(subscription, 0.0), time.monotonic() + seconds)

    def wait_time(self, subscription: str) -> float:
        return max(0.0, self._until.get(subscription, 0.0) - time.monotonic())


class ArmAccounting(AsyncHTTPPolicy):  # type: ignore[type-arg]
    def __init__(self, budget: ThrottleBudget, service: str = "arm") -> None:
        super().__init__()
        self._budget = budget
        self._service = service

    async def send(self, request: PipelineRequest[Any]) -> PipelineResponse[Any, Any]:
        http = request.http_request
        path = http.url.split("?", 1)[0]
        match = _SUBSCRIPTION.search(path)
        subscription = match.group(1) if match else ""
        if wait := self._budget.wait_time(subscription):
            await asyncio.sleep(wait)
        operation = operation_of(http.method, path)
        started = time.monotonic()
        response = await self.next.send(request)
        elapsed = time.monotonic() - started
        status = response.http_response.status_code
        metrics.AZURE_REQUESTS.labels(self._service, operation, str(status)).inc()
        metrics.AZURE_REQUEST_DURATION.labels(self._service, operation).observe(elapsed)
        headers = response.http_response.headers
        for header, kind in _RATELIMIT_HEADERS.items():
            if (value := headers.get(header)) is not None and value.isdigit():
                metrics.AZURE_RATELIMIT_REMAINING.labels(subscription, kind).set(int(value))
        if status == 429:
            metrics.AZURE_THROTTLED.labels(self._service).inc()
            delay = retry_after.from_headers(headers)
            self._budget.hold(subscription, 1.0 if delay is None else delay)
        return response


class CappedRetryPolicy(AsyncRetryPolicy):  # type: ignore[type-arg]
    """azure-core's retry policy, with the server's Retry-After read by ``amlops.retry_after``: azure-core sleeps
    whatever the header says inside the call (a day, for a hostile or broken endpoint), holding the object's
    pass and a worker slot of the operator every namespace shares."""

    def get_retry_after(self, response: PipelineResponse[Any, Any]) -> float | None:
        return retry_after.from_headers(response.http_response.headers)
