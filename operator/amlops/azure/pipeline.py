"""The azure-core pipeline policy in every SDK client amlops builds (ARM, Batch, Blob): request metrics, and for
ARM the rate-limit budget; the retry policy that reads Retry-After through ``amlops.retry_after``.

ARM reports what is left of a subscription's request budget in ``x-ms-ratelimit-remaining-subscription-*``
headers. We export it, pace each client's requests to it (``azure/pacing.py``), and after a 429 hold back every
request of that subscription until ``Retry-After`` has passed, so one throttled call does not become a storm of
them (the SDK's retry policy honours Retry-After for the call itself).
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from urllib.request import getproxies

from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import AsyncHTTPPolicy, AsyncRetryPolicy

from amlops import metrics, retry_after
from amlops.azure.pacing import Pacer, kind_of
from amlops.reconcile.errors import Deferred


def env_settings_in_use() -> bool:
    """Whether aiohttp's ``trust_env`` has anything to find here: a proxy variable (``HTTPS_PROXY``, ``NO_PROXY``
    ...) or a ``.netrc`` file (``NETRC``, else the home directory's). The SDK transports trust the environment
    (``use_env_settings``) only then: otherwise every request first looks up both in the loop's default executor and
    finds nothing, two thread hops a request (adding 100,000 tasks: a tenth of the operator's samples,
    bench/paralleljob_plan_submit.py)."""
    try:
        netrc = Path(os.environ.get("NETRC") or Path.home() / ".netrc")
    except RuntimeError:  # no home directory: aiohttp finds no .netrc either
        return bool(getproxies())
    return bool(getproxies()) or netrc.is_file()


_SUBSCRIPTION = re.compile(r"/subscriptions/([^/]+)", re.IGNORECASE)
_RATELIMIT_HEADERS = {
    "x-ms-ratelimit-remaining-subscription-reads": "reads",
    "x-ms-ratelimit-remaining-subscription-writes": "writes",
    "x-ms-ratelimit-remaining-subscription-deletes": "deletes",
}
ARM, BATCH, BLOB = "arm", "batch", "blob"  # the service label
NO_ANSWER = "none"  # the code label of a request that got no answer
# (method, URL path, URL query) → the operation label.
Operation = Callable[[str, str, str], str]
_ITEM_VERBS = {"GET": "get", "HEAD": "get", "PUT": "put", "PATCH": "patch", "DELETE": "delete"}
_COLLECTION_VERBS = {"GET": "list", "POST": "add"}
# Collections below an item (azure-batch's URL templates); any other last segment is an action.
_BATCH_COLLECTIONS = frozenset({"tasks", "nodes", "files", "jobs", "extensions", "users"})
_BLOB_VERBS = {"GET": "get", "HEAD": "properties", "PUT": "put", "DELETE": "delete"}
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
        ("GET", r"/workspaces/[^/]+$", "workspaces.get"),
    )
)


def arm_operation(method: str, path: str, query: str = "") -> str:
    for m, pattern, name in _OPERATIONS:
        if m == method and pattern.search(path):
            return name
    return f"{method.lower()}.other"


def batch_operation(endpoint: str) -> Operation:
    """Batch data-plane paths are ``collection/id/collection/id.../action`` under the account's endpoint (which
    may have a path of its own): the collections and the action name the operation, the ids are left out
    (``pools.get``, ``pools.resize``, ``jobs.tasks.list``, ``jobs.addtaskcollection``, ``nodecounts.list``)."""
    base = urlsplit(endpoint).path.rstrip("/")

    def name(method: str, path: str, query: str = "") -> str:
        segments = [s.lower() for s in path.removeprefix(base).split("/") if s]
        files = next((i for i in range(0, len(segments), 2) if segments[i] == "files"), None)
        if files is not None:  # a file path is one id, slashes and all
            segments = segments[: files + 2]
        if not segments:
            return f"{method.lower()}.other"
        names = segments[0::2]
        if len(segments) % 2 == 0:  # ends with an id: the item itself
            return ".".join([*names, _ITEM_VERBS.get(method, method.lower())])
        if len(segments) > 1 and names[-1] not in _BATCH_COLLECTIONS:  # an action: resize, terminate, taskcounts
            return ".".join(names)
        return ".".join([*names, _COLLECTION_VERBS.get(method, method.lower())])

    return name


def blob_operation(method: str, path: str, query: str = "") -> str:
    """Blob storage names the operation in the query (``restype``, ``comp``) and the method, never in the path
    (which holds container and blob names): ``container.list``, ``blob.get``, ``blob.block``, ``blob.blocklist``."""
    params = dict(parse_qsl(query))
    scope = params.get("restype", "blob").lower()
    comp = params.get("comp", "").lower()
    return f"{scope}.{comp or _BLOB_VERBS.get(method, method.lower())}"


class ThrottleBudget:
    """Per-subscription hold after a 429; shared by every client of the process."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}

    def hold(self, subscription: str, seconds: float) -> None:
        self._until[subscription] = max(self._until.get(subscription, 0.0), time.monotonic() + seconds)

    def wait_time(self, subscription: str) -> float:
        return max(0.0, self._until.get(subscription, 0.0) - time.monotonic())


class AzureAccounting(AsyncHTTPPolicy):  # type: ignore[type-arg]
    """The one request recorder, in the pipeline of every SDK client amlops builds (after the retry policy, so
    each attempt counts): ``amlops_azure_requests_total``, its latency and 429s by ``service`` (``arm``,
    ``batch``, ``blob``) and a low-cardinality ``operation`` (``pools.get``, ``blob.put``: never a name).

    With a :class:`ThrottleBudget` (ARM), it also exports ARM's remaining request budget and, after a 429,
    holds back every request of that subscription until Retry-After has passed.
    """

    def __init__(
        self, service: str, operation: Operation, budget: ThrottleBudget | None = None, pacer: Pacer | None = None
    ) -> None:
        super().__init__()
        self._service = service
        self._operation = operation
        self._budget = budget
        self._pacer = pacer

    async def send(self, request: PipelineRequest[Any]) -> PipelineResponse[Any, Any]:
        http = request.http_request
        url = urlsplit(http.url)
        match = _SUBSCRIPTION.search(url.path)
        subscription = match.group(1) if match else ""
        if self._budget is not None and (wait := self._budget.wait_time(subscription)):
            await asyncio.sleep(wait)
        kind = kind_of(http.method)
        if self._pacer is not None:
            try:
                paced = await self._pacer.admit(kind)
            except Deferred:
                metrics.AZURE_DEFERRED.labels(self._service, kind).inc()
                raise
            if paced:
                metrics.AZURE_PACED_SECONDS.labels(self._service, kind).inc(paced)
        operation = self._operation(http.method, url.path, url.query)
        started = time.monotonic()
        try:
            response = await self.next.send(request)
        except Exception:
            self._count(operation, NO_ANSWER, time.monotonic() - started)  # refused, reset, timed out
            if self._pacer is not None:
                self._pacer.abandoned(kind)
            raise
        status = response.http_response.status_code
        self._count(operation, str(status), time.monotonic() - started)
        headers = response.http_response.headers
        if status == 429:
            metrics.AZURE_THROTTLED.labels(self._service).inc()
        if self._budget is not None:
            self._account(self._budget, subscription, status, headers)
        if self._pacer is not None:
            self._pace(self._pacer, kind, status, headers)
        return response

    @staticmethod
    def _pace(pacer: Pacer, kind: str, status: int, headers: Mapping[str, str]) -> None:
        value = headers.get(f"x-ms-ratelimit-remaining-subscription-{kind}")
        pacer.answered(kind, int(value) if value is not None and value.isdigit() else None)
        if status == 429:
            delay = retry_after.from_headers(headers)
            pacer.throttled(kind, 1.0 if delay is None else delay)

    def _count(self, operation: str, code: str, elapsed: float) -> None:
        metrics.AZURE_REQUESTS.labels(self._service, operation, code).inc()
        metrics.AZURE_REQUEST_DURATION.labels(self._service, operation).observe(elapsed)

    @staticmethod
    def _account(budget: ThrottleBudget, subscription: str, status: int, headers: Mapping[str, str]) -> None:
        for header, kind in _RATELIMIT_HEADERS.items():
            if (value := headers.get(header)) is not None and value.isdigit():
                metrics.AZURE_RATELIMIT_REMAINING.labels(subscription, kind).set(int(value))
        if status == 429:
            delay = retry_after.from_headers(headers)
            budget.hold(subscription, 1.0 if delay is None else delay)


def arm_accounting(budget: ThrottleBudget, pacer: Pacer | None = None) -> AzureAccounting:
    return AzureAccounting(ARM, arm_operation, budget, pacer)


def batch_accounting(endpoint: str) -> AzureAccounting:
    return AzureAccounting(BATCH, batch_operation(endpoint))


def blob_accounting() -> AzureAccounting:
    return AzureAccounting(BLOB, blob_operation)


class CappedRetryPolicy(AsyncRetryPolicy):  # type: ignore[type-arg]
    """azure-core's retry policy, with the server's Retry-After read by ``amlops.retry_after``: azure-core sleeps
    whatever the header says inside the call (a day, for a hostile or broken endpoint), holding the object's
    pass and a worker slot of the operator every namespace shares."""

    def get_retry_after(self, response: PipelineResponse[Any, Any]) -> float | None:
        return retry_after.from_headers(response.http_response.headers)
