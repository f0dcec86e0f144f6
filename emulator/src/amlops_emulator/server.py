"""Start the emulator: the ARM half over HTTPS and, when present, the Batch half over HTTP, in one process.

``run_emulator(config)`` is an async context manager: on entry both servers listen, ``endpoints.json`` is in the
state directory (URLs, ports, CA file), and the yielded :class:`RunningEmulator` holds the live state. Tests use
it in-process; ``amlops emulator`` (cli.py) runs it until interrupted.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from yarl import URL

from amlops_emulator.arm.controls import add_simulator_controls
from amlops_emulator.arm.middleware import authenticate, envelope, render_error, throttle
from amlops_emulator.arm.routes import Dispatcher
from amlops_emulator.arm.state import ArmSettings, ArmState
from amlops_emulator.arm.throttle import BucketLimit, SubscriptionThrottle, ThrottleLimits
from amlops_emulator.azurite import azurite_blob
from amlops_emulator.clock import VirtualClock
from amlops_emulator.control import add_control_routes, loopback_only
from amlops_emulator.credentials import EMULATOR_TOKEN
from amlops_emulator.identity import DEFAULT_PRINCIPAL, Identity, add_identity_routes
from amlops_emulator.instrumentation import ErrorRenderer, Platform, middlewares
from amlops_emulator.loopback_proxy import LoopbackProxy
from amlops_emulator.ml.assets import Assets, default_container
from amlops_emulator.ml.execution import RunExecutor
from amlops_emulator.ml.history import add_history_routes
from amlops_emulator.ml.storage import StorageAccount
from amlops_emulator.seed import DEFAULT_LOCATION, Seed
from amlops_emulator.tls import TlsFiles, generate

log = logging.getLogger(__name__)

ENDPOINTS_FILE = "endpoints.json"
BATCH_MODULE = "amlops_emulator.batch"
# The names Azurite answers to: production-style account hosts under .localhost (amlops_emulator.loopback_proxy).
STORAGE_HOSTS = ["*.blob.core.localhost"]


@dataclass(frozen=True)
class EmulatorConfig:
    state_dir: Path
    host: str = "127.0.0.1"
    arm_port: int = 0  # 0: any free port
    batch_port: int = 0
    batch_tls_port: int = 0  # the Batch half over https (bearer tokens); 0: any free port
    seed: Seed = field(default_factory=Seed.default)
    speed: float = 1.0  # virtual seconds per real second
    throttle: ThrottleLimits = field(default_factory=ThrottleLimits)
    arm: ArmSettings = field(default_factory=ArmSettings)
    token: str = EMULATOR_TOKEN
    fault_seed: int = 0
    serve_batch: bool = True  # serve amlops_emulator.batch when that module exists
    # False: the control routes, and the whole Batch half (its node agent runs task command lines here), answer
    # only requests from loopback, whatever address the servers listen on.
    allow_remote_control: bool = False
    # Run Azurite (HTTPS, a certificate of the emulator's CA) as the workspaces' storage account, and the
    # loopback proxy that makes its production-style URL reachable (amlops_emulator.loopback_proxy).
    azurite: bool = False
    proxy_port: int = 0  # the loopback proxy's port; 0: any free port


@dataclass
class EmulatorState:
    """Everything the apps share: one clock, one seed, one set of faults and statistics."""

    config: EmulatorConfig
    clock: VirtualClock
    platform: Platform
    arm: ArmState
    throttle: SubscriptionThrottle
    identity: Identity
    runs: RunExecutor  # Azure ML runs on the AmlCompute clusters (started by run_emulator)
    assets: Assets = field(default_factory=Assets)
    storage: StorageAccount | None = None  # the workspaces' storage account: Azurite, with --azurite only

    @classmethod
    def create(cls, config: EmulatorConfig, storage: StorageAccount | None = None) -> EmulatorState:
        clock = VirtualClock(config.speed)
        arm = ArmState(config.seed, clock, config.arm)
        state = cls(
            config=config,
            clock=clock,
            platform=Platform(config.fault_seed),
            arm=arm,
            throttle=SubscriptionThrottle(config.throttle),
            identity=Identity(config.token),
            storage=storage,
            runs=RunExecutor(arm, config.state_dir),
        )
        state.platform.reset_hooks += [state.runs.reset, state.arm.reset, state.throttle.reset, state.assets.reset]
        return state


def _region(seed: Seed) -> str:
    groups = [rg for s in seed.subscriptions for rg in s.resource_groups]
    return groups[0].location if groups else DEFAULT_LOCATION


def build_arm_app(state: EmulatorState) -> web.Application:
    dispatcher = Dispatcher(state.arm, state.storage, state.assets, state.runs)
    if dispatcher.jobs is not None:
        state.platform.reset_hooks.append(dispatcher.jobs.reset)
    app = web.Application(
        middlewares=[
            envelope(_region(state.config.seed)),
            *middlewares(state.platform, render_error, dispatcher.operation_of),
            authenticate(state.identity),
            throttle(state.throttle),
        ],
        client_max_size=4 * 1024 * 1024,
    )
    if not state.config.allow_remote_control:
        app.middlewares.insert(0, loopback_only(every_route=False))
    add_control_routes(app, state.platform, state.clock)
    add_simulator_controls(app, state.arm)
    add_identity_routes(app, state.identity)
    if dispatcher.jobs is not None and state.storage is not None:
        add_history_routes(app, dispatcher.jobs)  # the discovery document and run history (MLClient.jobs.stream)
    if dispatcher.jobs is not None:
        jobs = dispatcher.jobs

        async def stop_pipelines(_: web.Application) -> None:
            await jobs.close()  # the pipelines' driver tasks, before the runs' processes are killed

        app.on_cleanup.append(stop_pipelines)
    app.router.add_route("*", "/{tail:.*}", dispatcher.handle)  # last: ARM paths are matched by hand
    return app


def batch_error(request: web.Request, status: int, code: str, message: str) -> web.Response:
    """Faults on the Batch port look like Batch's OData errors (fidelity trap 6)."""
    stamp = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    request_id = request.headers.get("client-request-id", "00000000-0000-0000-0000-000000000000")
    body = {
        "odata.metadata": f"{request.scheme}://{request.host}/$metadata#Microsoft.Azure.Batch.Protocol.Entities."
        "Container.errors/@Element",
        "code": code,
        "message": {"lang": "en-US", "value": f"{message}\nRequestId:{request_id}\nTime:{stamp}"},
    }
    return web.json_response(body, status=status, content_type="application/json", headers={"request-id": request_id})


def instrument(app: web.Application, platform: Platform, render: ErrorRenderer) -> web.Application:
    """Put the shared fault and statistics middlewares in front of an app built elsewhere."""
    for index, middleware in enumerate(middlewares(platform, render)):
        app.middlewares.insert(index, middleware)
    return app


def _batch_builder() -> Callable[..., web.Application] | None:
    if importlib.util.find_spec(BATCH_MODULE) is None:
        return None
    module = importlib.import_module(BATCH_MODULE)
    builder = getattr(module, "build_batch_app", None)
    return builder if callable(builder) else None


@dataclass(frozen=True)
class RunningEmulator:
    state: EmulatorState
    tls: TlsFiles
    arm_url: str
    batch_url: str | None
    endpoints_file: Path
    batch_tls_url: str | None = None
    proxy_url: str | None = None  # the loopback proxy, when Azurite runs

    @property
    def control_url(self) -> str:
        return f"{self.arm_url}/_emulator"


def _port(runner: web.AppRunner, site: int = 0) -> int:
    address: Any = runner.addresses[site]
    return int(address[1])


def _url(scheme: str, host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{port}"


async def _start_storage(config: EmulatorConfig, tls: TlsFiles, stack: AsyncExitStack) -> StorageAccount:
    """Azurite over HTTPS (the emulator's certificate, valid for ``*.blob.core.localhost``), as the storage account."""
    location = config.state_dir / "azurite"
    running = await asyncio.to_thread(stack.enter_context, azurite_blob(location, tls=(tls.cert, tls.key, tls.ca)))
    port = URL(running.blob_endpoint).port
    return StorageAccount(
        name=running.account_name,
        key=running.account_key,
        suffix=f"core.localhost:{port}",
        service_url=running.blob_endpoint,
        ca_file=str(tls.ca),
    )


async def _create_default_containers(state: EmulatorState, storage: StorageAccount) -> None:
    for ws in state.arm.all_workspaces():
        await storage.create_container(default_container(ws))


@asynccontextmanager
async def run_emulator(config: EmulatorConfig) -> AsyncIterator[RunningEmulator]:
    tls = generate(config.state_dir, [config.host, *STORAGE_HOSTS])
    runners: list[web.AppRunner] = []
    stack = AsyncExitStack()
    proxy = LoopbackProxy()
    state: EmulatorState | None = None
    try:
        storage = await _start_storage(config, tls, stack) if config.azurite else None
        state = EmulatorState.create(config, storage)
        state.runs.start()
        proxy_url = None
        if storage is not None:
            await _create_default_containers(state, storage)
            await proxy.start("127.0.0.1", config.proxy_port)
            proxy_url = proxy.url
        arm_runner = web.AppRunner(build_arm_app(state), access_log=None)
        runners.append(arm_runner)
        await arm_runner.setup()
        await web.TCPSite(arm_runner, config.host, config.arm_port, ssl_context=tls.server_context()).start()
        arm_url = _url("https", config.host, _port(arm_runner))
        batch_url = batch_tls_url = None
        builder = _batch_builder() if config.serve_batch else None
        if builder is not None:
            batch_app = instrument(
                builder(config, state.clock, config.seed, state.identity.valid), state.platform, batch_error
            )
            if not config.allow_remote_control:
                batch_app.middlewares.insert(0, loopback_only(every_route=True))
            batch_runner = web.AppRunner(batch_app, access_log=None)
            runners.append(batch_runner)
            await batch_runner.setup()
            await web.TCPSite(batch_runner, config.host, config.batch_port).start()
            # The same data plane over TLS, as Azure serves it: azure-core sends a bearer (Microsoft Entra) token
            # only over https. Shared-key clients may use either.
            context = tls.server_context()
            await web.TCPSite(batch_runner, config.host, config.batch_tls_port, ssl_context=context).start()
            batch_url = _url("http", config.host, _port(batch_runner))
            batch_tls_url = _url("https", config.host, _port(batch_runner, 1))
        endpoints = config.state_dir / ENDPOINTS_FILE
        running = RunningEmulator(state, tls, arm_url, batch_url, endpoints, batch_tls_url, proxy_url)
        _write_endpoints(running)
        log.info("ARM emulator on %s (CA %s); Batch %s", arm_url, tls.ca, batch_url or "not served")
        yield running
    finally:
        for runner in reversed(runners):
            await runner.cleanup()
        if state is not None:
            await state.runs.close()  # kills the processes of runs still running
        await proxy.close()
        await stack.aclose()


def _write_endpoints(running: RunningEmulator) -> None:
    data = {
        "armUrl": running.arm_url,
        "armPort": int(running.arm_url.rsplit(":", 1)[1]),
        "batchUrl": running.batch_url,
        "batchPort": int(running.batch_url.rsplit(":", 1)[1]) if running.batch_url else None,
        "batchTlsUrl": running.batch_tls_url,
        "controlUrl": running.control_url,
        "caFile": str(running.tls.ca),
        "token": running.state.config.token,
        # The Microsoft identity platform on the ARM port: a service principal's Secret works against it.
        "authorityHost": running.arm_url,
        "servicePrincipal": {
            "AZURE_TENANT_ID": DEFAULT_PRINCIPAL.tenant_id,
            "AZURE_CLIENT_ID": DEFAULT_PRINCIPAL.client_id,
            "AZURE_CLIENT_SECRET": DEFAULT_PRINCIPAL.client_secret,
        },
        "speed": running.state.clock.speed,
        # The workspaces' storage account (Azurite when started with --azurite): azure-ai-ml's
        # cloud_metadata["storage_endpoint"] is storageEndpointSuffix; clients reach it through proxyUrl.
        "storage": _storage_endpoints(running.state.storage, running.proxy_url),
    }
    tmp = running.endpoints_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(running.endpoints_file)  # readers never see a half-written file


def _storage_endpoints(storage: StorageAccount | None, proxy_url: str | None) -> dict[str, str | None] | None:
    if storage is None:
        return None
    return {
        "accountName": storage.name,
        "storageEndpointSuffix": storage.suffix,
        "blobUrl": storage.blob_url,
        "serviceUrl": storage.service_url,
        "proxyUrl": proxy_url,
    }


def throttle_limits(reads: tuple[int, float], writes: tuple[int, float], deletes: tuple[int, float]) -> ThrottleLimits:
    return ThrottleLimits(BucketLimit(*reads), BucketLimit(*writes), BucketLimit(*deletes))
