"""The ML routes of an in-process emulator started without ``--azurite``: it has no storage account, so the
routes that need one refuse clearly (409, our code ``WorkspaceStorageUnavailable``: not a 5xx, which azure-core
would retry) instead of naming an account that is not there; the rest of the workspace surface answers as with
one."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from amlops_emulator.credentials import EMULATOR_TOKEN
from amlops_emulator.seed import DEFAULT_RESOURCE_GROUP, DEFAULT_SUBSCRIPTION, DEFAULT_WORKSPACE
from amlops_emulator.server import EmulatorConfig, RunningEmulator, run_emulator

pytestmark = pytest.mark.emulator

WS = (
    f"/subscriptions/{DEFAULT_SUBSCRIPTION}/resourceGroups/{DEFAULT_RESOURCE_GROUP}"
    f"/providers/Microsoft.MachineLearningServices/workspaces/{DEFAULT_WORKSPACE}"
)


@pytest.fixture
async def bare(tmp_path: Path) -> AsyncIterator[RunningEmulator]:
    async with run_emulator(EmulatorConfig(state_dir=tmp_path / "emulator", serve_batch=False)) as running:
        yield running


async def _call(
    running: RunningEmulator, method: str, path: str, api_version: str, body: dict[str, Any] | None = None
) -> tuple[int, Any]:
    context = ssl.create_default_context(cafile=str(running.tls.ca))
    headers = {"Authorization": f"Bearer {EMULATOR_TOKEN}"}
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context), headers=headers) as session,
        session.request(method, f"{running.arm_url}{path}?api-version={api_version}", json=body or {}) as response,
    ):
        return response.status, await response.json()


async def test_storage_routes_refuse_without_azurite(bare: RunningEmulator) -> None:
    for method, path, version in (
        ("GET", f"{WS}/datastores", "2024-10-01-preview"),
        ("POST", f"{WS}/datastores/workspaceblobstore/listSecrets", "2024-10-01-preview"),
        ("POST", f"{WS}/codes/src/versions/1/startPendingUpload", "2023-04-01"),
    ):
        status, body = await _call(bare, method, path, version)
        assert (status, body["error"]["code"]) == (409, "WorkspaceStorageUnavailable"), path

    status, body = await _call(bare, "GET", WS, "2024-10-01-preview")
    assert status == 200
    assert "storageAccount" not in body["properties"]
    assert bare.state.storage is None


async def test_an_unserved_api_version_names_the_asset_type(bare: RunningEmulator) -> None:
    """An api-version the RP does not serve, on an asset route: ARM's 400 ``NoRegisteredProviderFound`` naming
    the resource type as ARM does (tests/emulator/arm/test_c22_api_versions.py cites the quoted messages)."""
    status, body = await _call(bare, "GET", f"{WS}/codes/src/versions/1", "2099-01-01")
    assert (status, body["error"]["code"]) == (400, "NoRegisteredProviderFound")
    assert "API version '2099-01-01' for type 'workspaces/codes/versions'" in body["error"]["message"]


async def test_a_job_with_outputs_is_refused_without_azurite(bare: RunningEmulator) -> None:
    """A command job whose outputs would go to the datastore: refused at submission (409
    ``WorkspaceStorageUnavailable``), before anything is queued."""
    job = {
        "properties": {
            "jobType": "Command",
            "command": "echo ${{outputs.model}}",
            "computeId": f"{WS}/computes/cpu",
            "environmentId": f"{WS}/environments/env/versions/1",
            "outputs": {"model": {"jobOutputType": "uri_folder"}},
        }
    }
    status, body = await _call(bare, "PUT", f"{WS}/jobs/needs-storage", "2025-01-01-preview", job)
    assert (status, body["error"]["code"]) == (409, "WorkspaceStorageUnavailable")
    assert bare.state.runs.get("needs-storage") is None
