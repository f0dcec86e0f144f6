"""The loopback proxy that makes the storage account's production-style URL reachable: it tunnels only to this
machine. RFC 6761 §6.3: names under ``.localhost`` are loopback; anything else is refused, so a client given the
proxy cannot reach the network through it."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import pytest

from amlops_emulator.loopback_proxy import loopback_target
from tests.support.processes import EmulatorProcess

pytestmark = pytest.mark.emulator


@pytest.mark.parametrize(
    ("authority", "expected"),
    [
        ("devstoreaccount1.blob.core.localhost:41234", ("127.0.0.1", 41234)),  # the storage account's host
        ("localhost:443", ("127.0.0.1", 443)),  # localhost itself
        ("LOCALHOST.:8443", ("127.0.0.1", 8443)),  # DNS names are case-insensitive; a trailing dot is the root
        ("127.0.0.1:10000", ("127.0.0.1", 10000)),  # a loopback address
        ("[::1]:10000", ("::1", 10000)),  # IPv6 loopback, bracketed as in an authority
        ("devstoreaccount1.blob.core.windows.net:443", None),  # Azure itself: never
        ("localhost.example.com:443", None),  # .localhost must be the last label, not a prefix
        ("10.0.0.4:443", None),  # a private address is not this machine
        ("localhost", None),  # no port: not a CONNECT authority
    ],
)
def test_only_loopback_destinations(authority: str, expected: tuple[str, int] | None) -> None:
    assert loopback_target(authority) == expected


def _connect(proxy_url: str, authority: str) -> bytes:
    parts = urlsplit(proxy_url)
    with socket.create_connection((str(parts.hostname), int(parts.port or 0)), timeout=10) as sock:
        sock.sendall(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
        return sock.recv(1024).split(b"\r\n", 1)[0]


def test_connect_elsewhere_is_forbidden_and_to_azurite_is_established(azure_ml: EmulatorProcess) -> None:
    """The running proxy answers 403 for a destination off this machine and tunnels to Azurite's port."""
    storage = azure_ml.run.endpoints["storage"]
    assert _connect(storage["proxyUrl"], "example.com:443") == b"HTTP/1.1 403 Forbidden"
    azurite_host = urlsplit(storage["blobUrl"]).netloc
    assert _connect(storage["proxyUrl"], azurite_host) == b"HTTP/1.1 200 Connection established"
