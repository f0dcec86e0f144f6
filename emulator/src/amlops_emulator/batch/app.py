"""The Batch data-plane application: one aiohttp app serving every seeded account at ``/{account}/...``.

The SDK is pointed at ``http://host:port/{account}`` (``BatchClient(endpoint=...)`` keeps a path prefix, and
the shared-key string to sign then includes it, as the service would see it). The middleware gives every
response a ``request-id`` and ``DataServiceVersion: 3.0``, echoes ``client-request-id`` only when asked
(``return-client-request-id: true``), authenticates, and renders errors as OData bodies without
``Retry-After`` (azure-core would retry any 4xx carrying one: trap 7).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from aiohttp import web

from amlops_emulator.batch import control, routes_jobs, routes_pools, routes_tasks
from amlops_emulator.batch.agent import NodeAgent
from amlops_emulator.batch.auth import authenticate
from amlops_emulator.batch.model import Account
from amlops_emulator.batch.responses import REQUEST_ID, SERVICE, BatchService, json_response
from amlops_emulator.batch.wire import BatchError
from amlops_emulator.clock import VirtualClock
from amlops_emulator.credentials import EMULATOR_TOKEN, Accepts
from amlops_emulator.seed import Seed

log = logging.getLogger(__name__)

CONTROL_PREFIX = "/_emulator/"
# The one data-plane version whose shapes the emulator serves (azure-batch 15.1.x's default); older clients send
# versions such as "2024-07-01.20.0" and would read shapes it does not give, so they are refused.
API_VERSIONS = ("2025-06-01",)
# aiohttp's own limit sits above the service's 1 MB so that the handler can answer RequestBodyTooLarge itself.
CLIENT_MAX_SIZE = 8 * 1024 * 1024


class HasStateDir(Protocol):
    @property
    def state_dir(self) -> Path: ...

    @property
    def token(self) -> str: ...


@dataclass(frozen=True)
class BatchEmulatorSettings:
    """Where the node agent keeps task directories (``{state_dir}/batch/{account}/{pool}/{node}/...``), and the
    bearer token AAD requests must carry (the ARM half's)."""

    state_dir: Path
    token: str = EMULATOR_TOKEN


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def batch_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    svc = request.app[SERVICE]
    request_id = str(uuid.uuid4())
    request[REQUEST_ID] = request_id
    try:
        if not request.path.startswith(CONTROL_PREFIX):
            _authenticate(request, svc)
            _check_api_version(request)
        response = await handler(request)
    except BatchError as error:
        response = _error_response(request, error, request_id, svc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "InvalidUri", 405: "UnsupportedHttpVerb", 413: "RequestBodyTooLarge"}.get(exc.status, "BadRequest")
        response = _error_response(request, BatchError(exc.status, code, exc.reason), request_id, svc)
    except Exception:
        log.exception("Batch emulator handler failed: %s %s", request.method, request.path)
        internal = BatchError(500, "InternalServerError", "The server encountered an internal error.")
        response = _error_response(request, internal, request_id, svc)
    response.headers["request-id"] = request_id
    response.headers["DataServiceVersion"] = "3.0"
    if request.headers.get("return-client-request-id", "").lower() == "true" and "client-request-id" in request.headers:
        response.headers["client-request-id"] = request.headers["client-request-id"]
    return response


def _authenticate(request: web.Request, svc: BatchService) -> None:
    name = request.match_info.get("account") or request.path.split("/")[1]
    acct = svc.accounts.get(name)
    if acct is None:
        raise BatchError(404, "AccountNotFound", f"The account {name!r} does not exist.")
    authenticate(
        request.headers.get("Authorization"),
        acct.name,
        acct.key,
        request.method,
        request.rel_url.raw_path,
        request.rel_url.raw_query_string,
        request.headers.items(),
        svc.token,
    )
    svc.agent.refresh(acct)


def _check_api_version(request: web.Request) -> None:
    """The service's refusal of a missing or unknown api-version: 400 ``MissingRequiredQueryParameter``
    (azure-sdk-for-js issue 22398, a task URL without it) or ``InvalidQueryParameterValue`` "Value for one of
    the query parameters specified in the request URI is invalid." (azure-sdk-for-python issue 19224, an
    api-version the service did not know yet). The ``values`` entries follow the other Batch errors' key names;
    the threads do not show them, nor the missing parameter's message (not verified)."""
    version = request.query.get("api-version")
    if version is None:
        raise BatchError(
            400,
            "MissingRequiredQueryParameter",
            "A query parameter that's mandatory for this request is not specified.",
            {"QueryParameterName": "api-version"},
        )
    if version not in API_VERSIONS:
        raise BatchError(
            400,
            "InvalidQueryParameterValue",
            "Value for one of the query parameters specified in the request URI is invalid.",
            {"QueryParameterName": "api-version", "QueryParameterValue": version},
        )


def _error_response(request: web.Request, error: BatchError, request_id: str, svc: BatchService) -> web.Response:
    if error.status == 304:
        return web.Response(status=304)
    account_url = f"{request.scheme}://{request.host}/{request.path.split('/')[1]}"
    response = json_response(error.body(account_url, request_id, svc.clock.now()), status=error.status)
    response.headers.update(error.headers)
    return response


def build_batch_app(
    config: HasStateDir, clock: VirtualClock, seed: Seed, accepts: Accepts | None = None
) -> web.Application:
    """The Batch data plane for every account of ``seed``; the node agent starts and stops with the app.
    ``accepts``: the bearer tokens AAD requests may carry (the emulator's identity platform's), else
    ``config.token`` alone."""
    accounts = {acct.name: Account(name=acct.name, key=acct.key) for _, _, acct in seed.batch_accounts()}
    app = web.Application(middlewares=[batch_middleware], client_max_size=CLIENT_MAX_SIZE)
    agent = NodeAgent(accounts, clock, Path(config.state_dir))
    app[SERVICE] = BatchService(accounts=accounts, agent=agent, clock=clock, token=accepts or config.token)
    # Control routes first: ``/_emulator/...`` must not be taken for an account named ``_emulator``.
    app.add_routes(control.routes())
    app.add_routes(routes_pools.routes())
    app.add_routes(routes_jobs.routes())
    app.add_routes(routes_tasks.routes())

    async def start_agent(_app: web.Application) -> None:
        agent.start()

    async def stop_agent(_app: web.Application) -> None:
        await agent.close()

    app.on_startup.append(start_agent)
    app.on_cleanup.append(stop_agent)
    return app
