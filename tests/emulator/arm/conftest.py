"""Fixtures for the ARM conformance suite: an in-process emulator on a free loopback port, the real SDK client.

- ``start_emulator(**config)``: start one more emulator with ``EmulatorConfig`` overrides (closed at teardown).
- ``emulator``: a running emulator whose clock runs 2000x (a 30 s create takes 15 ms), for SDK LRO flows.
- ``frozen``: a running emulator whose clock stands still until the test advances it, for transitions.
- ``ml_client``: ``MachineLearningServicesMgmtClient`` (aio) on ``emulator``, trusting its CA, polling_interval=0.
- ``arm``: a raw aiohttp helper on ``emulator`` for what the SDK hides (headers, exact bodies).
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from azure.mgmt.machinelearningservices.aio import MachineLearningServicesMgmtClient

from amlops_emulator.credentials import EMULATOR_TOKEN, EmulatorCredential
from amlops_emulator.seed import DEFAULT_RESOURCE_GROUP, DEFAULT_SUBSCRIPTION, DEFAULT_WORKSPACE
from amlops_emulator.server import EmulatorConfig, RunningEmulator, run_emulator

SUB = DEFAULT_SUBSCRIPTION
RG = DEFAULT_RESOURCE_GROUP
WS = DEFAULT_WORKSPACE
API = "2020-08-01"
BASE = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.MachineLearningServices/workspaces/{WS}"
FAST = 2000.0

Starter = Callable[..., Awaitable[RunningEmulator]]


@pytest.fixture
async def start_emulator(tmp_path: Path) -> AsyncIterator[Starter]:
    async with AsyncExitStack() as stack:
        count = 0

        async def start(**overrides: Any) -> RunningEmulator:
            nonlocal count
            count += 1
            config = replace(EmulatorConfig(state_dir=tmp_path / f"emulator-{count}", serve_batch=False), **overrides)
            return await stack.enter_async_context(run_emulator(config))

        yield start


@pytest.fixture
async def emulator(start_emulator: Starter) -> RunningEmulator:
    return await start_emulator(speed=FAST)


@pytest.fixture
async def frozen(start_emulator: Starter) -> RunningEmulator:
    return await start_emulator(speed=0.0)


def client_for(running: RunningEmulator, **kwargs: Any) -> MachineLearningServicesMgmtClient:
    return MachineLearningServicesMgmtClient(
        credential=EmulatorCredential(),
        subscription_id=SUB,
        base_url=running.arm_url,
        polling_interval=0,
        connection_verify=str(running.tls.ca),
        **kwargs,
    )


@pytest.fixture
async def ml_client(emulator: RunningEmulator) -> AsyncIterator[MachineLearningServicesMgmtClient]:
    async with client_for(emulator) as client:
        yield client


class Arm:
    """Raw HTTPS calls with the emulator's bearer token; ``url`` takes an ARM path and adds the api-version."""

    def __init__(self, running: RunningEmulator, session: aiohttp.ClientSession) -> None:
        self.running = running
        self.session = session

    def url(self, path: str, api_version: str | None = API, **query: str) -> str:
        params = dict(query)
        if api_version is not None:
            params["api-version"] = api_version
        text = "&".join(f"{k}={v}" for k, v in params.items())
        return f"{self.running.arm_url}{path}" + (f"?{text}" if text else "")

    async def call(
        self, method: str, path: str, body: Any = None, *, api_version: str | None = API, **query: str
    ) -> tuple[int, dict[str, str], Any]:
        kwargs: dict[str, Any] = {}
        if body is not None:
            kwargs["json"] = body
        async with self.session.request(method, self.url(path, api_version, **query), **kwargs) as response:
            text = await response.text()
            return response.status, dict(response.headers), (json.loads(text) if text else None)

    async def control(self, method: str, path: str, body: Any = None) -> Any:
        async with self.session.request(method, f"{self.running.control_url}{path}", json=body) as response:
            assert response.status < 300, await response.text()
            return await response.json() if response.status != 204 else None

    async def advance(self, seconds: float) -> None:
        await self.control("POST", "/clock/advance", {"seconds": seconds})


def session_for(running: RunningEmulator, *, token: str | None = EMULATOR_TOKEN) -> aiohttp.ClientSession:
    context = ssl.create_default_context(cafile=str(running.tls.ca))
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context), headers=headers)


@pytest.fixture
async def arm(emulator: RunningEmulator) -> AsyncIterator[Arm]:
    async with session_for(emulator) as session:
        yield Arm(emulator, session)


@pytest.fixture
async def frozen_arm(frozen: RunningEmulator) -> AsyncIterator[Arm]:
    async with session_for(frozen) as session:
        yield Arm(frozen, session)


def aml_body(
    vm_size: str = "STANDARD_NC6",
    *,
    min_nodes: int = 0,
    max_nodes: int = 1,
    idle: str = "PT5M",
    priority: str = "Dedicated",
    location: str = "westeurope",
) -> dict[str, Any]:
    """The create body of createBasicAmlCompute.json (C1), with knobs."""
    return {
        "location": location,
        "identity": {"type": "SystemAssigned"},
        "properties": {
            "computeType": "AmlCompute",
            "properties": {
                "vmSize": vm_size,
                "vmPriority": priority,
                "scaleSettings": {
                    "maxNodeCount": max_nodes,
                    "minNodeCount": min_nodes,
                    "nodeIdleTimeBeforeScaleDown": idle,
                },
                "remoteLoginPortPublicAccess": "NotSpecified",
            },
        },
    }
