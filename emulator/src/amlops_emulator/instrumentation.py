"""Route-agnostic test controls shared by every emulator app: fault injection and call statistics.

Both work on method + path alone, so any aiohttp app mounted with :func:`middlewares` gets them (the ARM half and
the Batch half alike). A handler may name its operation by setting ``request[OPERATION]`` (e.g.
``"MachineLearningCompute_Get"``); statistics fall back to ``"METHOD /path"`` otherwise. The routes that drive
these controls live in :mod:`amlops_emulator.control`.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import re
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from pydantic import BaseModel, ConfigDict, Field, field_validator

# Names the operation a method and path would reach, for calls a fault stops before their handler.
OperationNamer = Callable[[str, str], str | None]
# Renders a fault as the app's own error shape (ARM JSON for ARM, OData for Batch).
ErrorRenderer = Callable[[web.Request, int, str, str], web.StreamResponse]

CONTROL_PREFIX = "/_emulator/"
OPERATION = web.RequestKey("amlops_emulator.operation", str)


class AsyncFailure(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = "InternalServerError"
    message: str = "The operation failed (injected by the emulator)."


# Set on the request when a fault asks for the long-running operation started by this call to fail.
ASYNC_FAILURE = web.RequestKey("amlops_emulator.async_failure", AsyncFailure)
# Set on the request when a fault asks the handler to accept the write and keep nothing of it.
DISCARD = web.RequestKey("amlops_emulator.discard", bool)


class FaultSpec(BaseModel):
    """One rule of ``POST /_emulator/faults``. With no ``status``, ``asyncFailure`` or ``discard`` it only adds
    latency. ``status`` is an error (400-599), rendered in the app's error shape, or 204: an empty answer, as a
    DELETE of a compute that does not exist gets from api-version 2024-10-01 on."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    method: str = ".*"
    path: str
    status: int | None = Field(default=None, ge=200, le=599)
    code: str | None = None
    message: str | None = None
    retry_after: int | None = Field(default=None, alias="retryAfter", ge=0)
    latency_ms: int = Field(default=0, alias="latencyMs", ge=0, le=120_000)
    async_failure: AsyncFailure | None = Field(default=None, alias="asyncFailure")
    # The write is answered as if it succeeded but changes nothing, as when the RP normalises a value back or
    # silently ignores a property (handlers that honour it: ARM compute PATCH).
    discard: bool = False
    count: int | None = Field(default=None, ge=1)
    probability: float = Field(default=1.0, ge=0.0, le=1.0)

    @field_validator("status")
    @classmethod
    def _answerable(cls, value: int | None) -> int | None:
        if value is not None and value < 400 and value != 204:
            raise ValueError("status must be 204 (no content) or an error, 400-599")
        return value

    @field_validator("method", "path")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return value


@dataclass
class Fault:
    id: int
    spec: FaultSpec
    remaining: int | None
    applied: int = 0
    _method: re.Pattern[str] = field(init=False, repr=False)
    _path: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._method = re.compile(self.spec.method, re.IGNORECASE)
        self._path = re.compile(self.spec.path, re.IGNORECASE)

    def matches(self, method: str, path: str) -> bool:
        return self._method.fullmatch(method) is not None and self._path.search(path) is not None

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            **self.spec.model_dump(by_alias=True, exclude_none=True),
            "remaining": self.remaining,
            "applied": self.applied,
        }


class FaultInjector:
    def __init__(self, seed: int = 0) -> None:
        self._faults: dict[int, Fault] = {}
        self._ids = itertools.count(1)
        self._random = random.Random(seed)

    def add(self, spec: FaultSpec) -> Fault:
        fault = Fault(next(self._ids), spec, spec.count)
        self._faults[fault.id] = fault
        return fault

    def remove(self, fault_id: int) -> bool:
        return self._faults.pop(fault_id, None) is not None

    def clear(self) -> None:
        self._faults.clear()

    def list(self) -> list[Fault]:
        return list(self._faults.values())

    def take(self, method: str, path: str) -> Fault | None:
        """The first matching rule that fires for this call; its count is used up here."""
        for fault in list(self._faults.values()):
            if not fault.matches(method, path):
                continue
            if fault.spec.probability < 1.0 and self._random.random() >= fault.spec.probability:
                continue
            fault.applied += 1
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining == 0:
                    del self._faults[fault.id]
            return fault
        return None


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    operation: str
    status: int
    api_version: str | None = None  # the ``api-version`` query parameter the client sent (ARM), if any


class CallStats:
    """Counts per operation and status, plus the most recent calls in order (for retry assertions)."""

    def __init__(self, history: int = 2000) -> None:
        self._counts: dict[str, Counter[int]] = {}
        self._recent: deque[Call] = deque(maxlen=history)

    def record(self, call: Call) -> None:
        self._counts.setdefault(call.operation, Counter())[call.status] += 1
        self._recent.append(call)

    def reset(self) -> None:
        self._counts.clear()
        self._recent.clear()

    def snapshot(self) -> dict[str, Any]:
        operations = {
            name: {"count": sum(statuses.values()), "statuses": {str(s): n for s, n in sorted(statuses.items())}}
            for name, statuses in sorted(self._counts.items())
        }
        return {
            "total": sum(op["count"] for op in operations.values()),
            "operations": operations,
            "recent": [
                {
                    "method": c.method,
                    "path": c.path,
                    "operation": c.operation,
                    "status": c.status,
                    "apiVersion": c.api_version,
                }
                for c in self._recent
            ],
        }


class Platform:
    """The controls one emulator process shares across its apps."""

    def __init__(self, fault_seed: int = 0) -> None:
        self.faults = FaultInjector(fault_seed)
        self.stats = CallStats()
        self.reset_hooks: list[Callable[[], None]] = []

    def reset(self) -> None:
        self.faults.clear()
        self.stats.reset()
        for hook in self.reset_hooks:
            hook()


def _is_control(request: web.Request) -> bool:
    return request.path.startswith(CONTROL_PREFIX)


def stats_middleware(platform: Platform, namer: OperationNamer | None = None) -> Middleware:
    @web.middleware
    async def record_call(request: web.Request, handler: Handler) -> web.StreamResponse:
        if _is_control(request):
            return await handler(request)
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except Exception as exc:
            # HTTP exceptions and app errors (e.g. ArmError) that an outer middleware renders carry a status.
            carried = getattr(exc, "status", None)
            status = carried if isinstance(carried, int) else 500
            raise
        finally:
            # A faulted call never reaches its handler, so the app's namer names it from method and path.
            operation = request.get(OPERATION) or (namer and namer(request.method, request.path))
            operation = operation or f"{request.method} {request.path}"
            version = request.query.get("api-version")
            platform.stats.record(Call(request.method, request.path, operation, status, version))

    return record_call


def fault_middleware(platform: Platform, render: ErrorRenderer) -> Middleware:
    @web.middleware
    async def inject_fault(request: web.Request, handler: Handler) -> web.StreamResponse:
        if _is_control(request):
            return await handler(request)
        fault = platform.faults.take(request.method, request.path)
        if fault is None:
            return await handler(request)
        spec = fault.spec
        if spec.latency_ms:
            # Latency is felt by the client in real time, whatever the emulator clock's speed.
            await asyncio.sleep(spec.latency_ms / 1000)
        if spec.status == 204:
            return web.Response(status=204)
        if spec.status is not None:
            response = render(
                request,
                spec.status,
                spec.code or _default_code(spec.status),
                spec.message or "Injected by the emulator.",
            )
            if spec.retry_after is not None:
                response.headers["Retry-After"] = str(spec.retry_after)
            return response
        if spec.async_failure is not None:
            request[ASYNC_FAILURE] = spec.async_failure
        if spec.discard:
            request[DISCARD] = True
        return await handler(request)

    return inject_fault


def _default_code(status: int) -> str:
    return {
        400: "BadRequest",
        404: "NotFound",
        409: "Conflict",
        429: "TooManyRequests",
        500: "InternalServerError",
        502: "BadGateway",
        503: "ServiceUnavailable",
        504: "GatewayTimeout",
    }.get(status, "InjectedFault")


def middlewares(platform: Platform, render: ErrorRenderer, namer: OperationNamer | None = None) -> list[Middleware]:
    """Statistics outermost (they see injected faults too), then faults."""
    return [stats_middleware(platform, namer), fault_middleware(platform, render)]
