"""The emulator answers its control routes, and its Batch half (whose node agent runs task command lines on this
machine), only on loopback unless started with ``--allow-remote-control``. Emulator behaviour of our own, not
Azure's: the check is tested as a pure function and with real requests from this machine's non-loopback address
(no spoofing: the peer address is whatever the kernel reports)."""

from __future__ import annotations

import socket
from dataclasses import dataclass

import aiohttp
import pytest

from amlops_emulator.control import is_loopback

from .conftest import FAST, Starter

pytestmark = pytest.mark.emulator


@dataclass(frozen=True)
class PeerCase:
    reason: str
    peer: str | None
    loopback: bool


PEER_CASES = [
    PeerCase("IPv4 loopback", "127.0.0.1", True),
    PeerCase("all of 127.0.0.0/8 is loopback", "127.0.1.1", True),
    PeerCase("IPv6 loopback", "::1", True),
    PeerCase("IPv4 loopback mapped into IPv6 (a dual-stack socket)", "::ffff:127.0.0.1", True),
    PeerCase("a private address is another machine", "10.0.0.7", False),
    PeerCase("this machine's own interface address is not loopback", "192.0.2.2", False),
    PeerCase("a mapped remote address", "::ffff:10.0.0.7", False),
    PeerCase("a link-local IPv6 address with a zone", "fe80::1%eth0", False),
    PeerCase("no peer address (e.g. a unix socket)", None, False),
    PeerCase("a name is not an address", "localhost", False),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.reason) for c in PEER_CASES])
def test_is_loopback(case: PeerCase) -> None:
    assert is_loopback(case.peer) == case.loopback, case.reason


def interface_address() -> str:
    """This machine's address towards the network (a UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.254", 9))
        except OSError:
            pytest.skip("no network interface besides loopback")
        address = str(probe.getsockname()[0])
    if is_loopback(address) or address == "0.0.0.0":
        pytest.skip("no network interface besides loopback")
    return address


async def statuses(host: str, arm_port: int, batch_port: int) -> tuple[int, int, int]:
    """(ARM control route, ARM API without a token, Batch control route) as seen from ``host``."""
    async with aiohttp.ClientSession() as http:
        arm = f"https://{host}:{arm_port}"
        async with http.get(f"{arm}/_emulator/health", ssl=False) as control:
            control_status = control.status
        async with http.get(f"{arm}/subscriptions?api-version=2022-12-01", ssl=False) as api:
            api_status = api.status
        async with http.get(f"http://{host}:{batch_port}/_emulator/batch/stats") as batch:
            batch_status = batch.status
            if batch_status == 403:
                assert (await batch.json())["error"]["code"] == "RemoteControlRefused"
    return control_status, api_status, batch_status


def ports(url: str | None) -> int:
    assert url is not None
    return int(url.rsplit(":", 1)[1])


async def test_remote_requests_are_refused_unless_allowed(start_emulator: Starter) -> None:
    pytest.importorskip("amlops_emulator.batch")
    address = interface_address()
    running = await start_emulator(speed=FAST, serve_batch=True, host="0.0.0.0")
    arm_port, batch_port = ports(running.arm_url), ports(running.batch_url)

    # From this machine's interface address, the peer the servers see is that address: refused, except the
    # ARM API itself (it has its own authentication: 401 without a token).
    assert await statuses(address, arm_port, batch_port) == (403, 401, 403)
    assert await statuses("127.0.0.1", arm_port, batch_port) == (200, 401, 200)

    allowed = await start_emulator(speed=FAST, serve_batch=True, host="0.0.0.0", allow_remote_control=True)
    assert await statuses(address, ports(allowed.arm_url), ports(allowed.batch_url)) == (200, 401, 200)
