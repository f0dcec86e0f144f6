"""``/_emulator/`` routes: the knobs tests and the demo turn (faults, statistics, reset, the virtual clock).

They need no authentication and are neither throttled, faulted nor counted. Mounted on every emulator app so a
test can reach them on whichever port it already knows. Because they need no authentication, they answer only
requests from this machine (:func:`loopback_only`), unless the emulator runs with ``--allow-remote-control``.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from amlops_emulator.clock import VirtualClock
from amlops_emulator.instrumentation import CONTROL_PREFIX, FaultSpec, Platform


def is_loopback(peer: str | None) -> bool:
    """Whether a request's peer address is this machine's loopback (``127.0.0.0/8``, ``::1``, or IPv4 loopback
    mapped into IPv6). Anything else, including no address or a name, is remote."""
    if not peer:
        return False
    try:
        address = ipaddress.ip_address(peer.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def loopback_only(every_route: bool) -> Middleware:
    """403 for a request from another machine: to the control routes, or with ``every_route`` to any route (the
    Batch half, whose node agent runs every task's command line on this machine)."""

    @web.middleware
    async def refuse_remote(request: web.Request, handler: Handler) -> web.StreamResponse:
        if (every_route or request.path.startswith(CONTROL_PREFIX)) and not is_loopback(request.remote):
            message = (
                f"the emulator answers {'this port' if every_route else 'its control routes'} only on loopback; "
                f"{request.remote} is not (start it with --allow-remote-control to change that)"
            )
            return web.json_response({"error": {"code": "RemoteControlRefused", "message": message}}, status=403)
        return await handler(request)

    return refuse_remote


class _Advance(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: float = Field(ge=0, le=10 * 365 * 86400)


def _bad_request(message: str) -> web.Response:
    return web.json_response({"error": {"code": "BadRequest", "message": message}}, status=400)


async def _json(request: web.Request) -> Any:
    try:
        return await request.json(loads=json.loads)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": {"code": "BadRequest", "message": f"invalid JSON: {exc}"}}),
            content_type="application/json",
        ) from exc


def add_control_routes(app: web.Application, platform: Platform, clock: VirtualClock) -> None:
    _add_fault_routes(app, platform)

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def stats(_: web.Request) -> web.Response:
        return web.json_response(platform.stats.snapshot())

    async def reset_stats(_: web.Request) -> web.Response:
        platform.stats.reset()
        return web.Response(status=204)

    async def reset(_: web.Request) -> web.Response:
        platform.reset()
        return web.Response(status=204)

    async def get_clock(_: web.Request) -> web.Response:
        return web.json_response({"now": clock.now().isoformat(), "speed": clock.speed})

    async def advance(request: web.Request) -> web.Response:
        try:
            body = _Advance.model_validate(await _json(request))
        except ValidationError as exc:
            return _bad_request(str(exc))
        return web.json_response({"now": clock.advance(body.seconds).isoformat(), "speed": clock.speed})

    app.router.add_get("/_emulator/health", health)
    app.router.add_get("/_emulator/stats", stats)
    app.router.add_delete("/_emulator/stats", reset_stats)
    app.router.add_post("/_emulator/reset", reset)
    app.router.add_get("/_emulator/clock", get_clock)
    app.router.add_post("/_emulator/clock/advance", advance)


def _add_fault_routes(app: web.Application, platform: Platform) -> None:
    async def add_faults(request: web.Request) -> web.Response:
        body = await _json(request)
        items = body if isinstance(body, list) else [body]
        try:
            specs = [FaultSpec.model_validate(item) for item in items]
        except ValidationError as exc:
            return _bad_request(str(exc))
        faults = [platform.faults.add(spec) for spec in specs]
        return web.json_response({"faults": [f.describe() for f in faults]}, status=201)

    async def list_faults(_: web.Request) -> web.Response:
        return web.json_response({"faults": [f.describe() for f in platform.faults.list()]})

    async def clear_faults(_: web.Request) -> web.Response:
        platform.faults.clear()
        return web.Response(status=204)

    async def remove_fault(request: web.Request) -> web.Response:
        try:
            fault_id = int(request.match_info["id"])
        except ValueError:
            return _bad_request("fault id must be an integer")
        if not platform.faults.remove(fault_id):
            return web.json_response({"error": {"code": "NotFound", "message": "no such fault"}}, status=404)
        return web.Response(status=204)

    app.router.add_post("/_emulator/faults", add_faults)
    app.router.add_get("/_emulator/faults", list_faults)
    app.router.add_delete("/_emulator/faults", clear_faults)
    app.router.add_delete("/_emulator/faults/{id}", remove_fault)
