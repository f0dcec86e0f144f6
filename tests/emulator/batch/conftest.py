"""Fixtures: the Batch emulator app served on a free loopback port, and azure-batch aio clients for it.

The clock runs at real speed; tests move pool allocation along with ``emulator.clock.advance(...)`` (the
simulated durations are minutes), while tasks run as real processes in real time.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web
from azure.batch import models
from azure.batch.aio import BatchClient
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import HttpResponseError
from azure.core.rest import AsyncHttpResponse, HttpRequest
from multidict import CIMultiDict

from amlops_emulator.batch import BatchEmulatorSettings, build_batch_app
from amlops_emulator.batch.pools import NODE_START_SECONDS, RESIZE_SECONDS
from amlops_emulator.clock import VirtualClock
from amlops_emulator.seed import DEFAULT_BATCH_ACCOUNT, DEFAULT_BATCH_KEY, Seed

T = TypeVar("T")
API_VERSION = "2025-06-01"


@dataclass
class BatchEmulator:
    root_url: str  # http://127.0.0.1:port
    clock: VirtualClock
    state_dir: Path
    app: web.Application

    @property
    def endpoint(self) -> str:
        return f"{self.root_url}/{DEFAULT_BATCH_ACCOUNT}"

    def client(self, key: str = DEFAULT_BATCH_KEY, **kwargs: object) -> BatchClient:
        return BatchClient(self.endpoint, AzureNamedKeyCredential(DEFAULT_BATCH_ACCOUNT, key), **kwargs)

    def allocate(self) -> None:
        """Let a resize finish and its nodes boot (virtual time)."""
        self.clock.advance(RESIZE_SECONDS + NODE_START_SECONDS + 1)

    @staticmethod
    async def eventually(probe: Callable[[], Awaitable[T | None]], within: float = 30.0) -> T:
        """Poll ``probe`` until it returns something truthy; fail after ``within`` real seconds."""
        deadline = time.monotonic() + within
        while True:
            result = await probe()
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {within} s (last: {result!r})")
            await asyncio.sleep(0.02)

    async def ready_pool(
        self, client: BatchClient, pool_id: str, dedicated: int = 1, low: int = 0, slots: int = 1
    ) -> None:
        """A pool whose nodes are idle: created, allocated and booted on the virtual clock."""
        await client.create_pool(
            models.BatchPoolCreateOptions(
                id=pool_id,
                vm_size="standard_d2s_v3",
                target_dedicated_nodes=dedicated,
                target_low_priority_nodes=low,
                task_slots_per_node=slots,
            )
        )
        self.allocate()

        async def idle() -> bool:
            nodes = [n async for n in client.list_nodes(pool_id)]
            return len(nodes) == dedicated + low and all(n.state == models.BatchNodeState.IDLE for n in nodes)

        await self.eventually(idle)

    async def run_to_completion(self, client: BatchClient, job_id: str, count: int, within: float = 30.0) -> None:
        async def completed() -> bool:
            counts = await client.get_job_task_counts(job_id)
            return counts.task_counts.completed == count

        await self.eventually(completed, within)


@pytest.fixture
async def emulator(tmp_path: Path) -> AsyncIterator[BatchEmulator]:
    clock = VirtualClock(speed=1.0)
    app = build_batch_app(BatchEmulatorSettings(state_dir=tmp_path / "state"), clock, Seed.default())
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    site = web.SockSite(runner, sock)
    await site.start()
    try:
        yield BatchEmulator(f"http://127.0.0.1:{port}", clock, tmp_path / "state", app)
    finally:
        await runner.cleanup()


@pytest.fixture
async def client(emulator: BatchEmulator) -> AsyncIterator[BatchClient]:
    async with emulator.client() as batch:
        yield batch


@dataclass
class RawResponse:
    status: int
    headers: CIMultiDict[str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@pytest.fixture
def raw(client: BatchClient) -> Callable[..., Awaitable[RawResponse]]:
    """Send a request through the SDK pipeline (so it is signed) and return the raw response, errors included."""

    async def send(method: str, path: str, body: object = None, headers: dict[str, str] | None = None) -> RawResponse:
        separator = "&" if "?" in path else "?"
        request = HttpRequest(method, f"{path}{separator}api-version={API_VERSION}", headers=headers or {})
        if body is not None:
            request = HttpRequest(
                method,
                f"{path}{separator}api-version={API_VERSION}",
                headers={"Content-Type": "application/json; odata=minimalmetadata", **(headers or {})},
                content=json.dumps(body).encode(),
            )
        try:
            response = await client.send_request(request)
        except HttpResponseError as error:
            # azure-core types the error's response as the base of its two response APIs; send_request's is
            # the azure.core.rest one.
            if not isinstance(error.response, AsyncHttpResponse):
                raise
            response = error.response
        if not response.is_stream_consumed:
            await response.read()
        return RawResponse(response.status_code, CIMultiDict(response.headers), response.content)

    return send
