"""An HTTPS (CONNECT) proxy that reaches only this machine: names under ``.localhost`` and loopback addresses.

Why: azure-ai-ml builds a datastore's account URL as ``https://{account}.blob.{storage_endpoint}`` (its
``STORAGE_ACCOUNT_URLS``), so the emulator's storage account is ``https://devstoreaccount1.blob.core.localhost:{port}``
— the production-style URL Azurite serves (Azure's Azurite documentation, "Production-style URL": the account is
the first label of the host). RFC 6761 reserves ``.localhost`` for loopback, but this machine's resolver does not
implement that, and the documented way (a hosts-file line) would change the machine. So clients are given this
proxy (``HTTPS_PROXY``): it resolves ``*.localhost`` to 127.0.0.1 and tunnels the TLS stream unchanged, so the
client still checks Azurite's certificate for the production-style name. Any other destination is refused with
403: nothing sent through it can leave the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging

log = logging.getLogger(__name__)

_HEADER_LIMIT = 16 * 1024


def loopback_target(authority: str) -> tuple[str, int] | None:
    """The loopback address and port a CONNECT authority (``host:port``) names, or None if it is elsewhere."""
    host, sep, port_text = authority.rpartition(":")
    if not sep or not port_text.isdigit():
        return None
    host = host.strip("[]").lower().rstrip(".")
    port = int(port_text)
    if host == "localhost" or host.endswith(".localhost"):
        return "127.0.0.1", port
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    return (str(address), port) if address.is_loopback else None


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _answer(writer: asyncio.StreamWriter, status: str) -> None:
    writer.write(f"HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
    with contextlib.suppress(ConnectionError):
        await writer.drain()
    writer.close()


class LoopbackProxy:
    """The proxy's server and its open tunnels, all closed by :meth:`close` (a kept-alive tunnel would otherwise
    hold the server's ``wait_closed`` for ever on Python 3.12+)."""

    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the loopback proxy is not listening")
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    async def start(self, host: str, port: int) -> None:
        """Listen on ``host:port`` (0: any free port)."""
        self._server = await asyncio.start_server(self._handle, host, port, limit=_HEADER_LIMIT)

    async def close(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self._writers.add(client_writer)
        try:
            await self._tunnel(client_reader, client_writer)
        finally:
            self._writers.discard(client_writer)

    async def _tunnel(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            head = await client_reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            client_writer.close()
            return
        method, _, rest = head.split(b"\r\n", 1)[0].decode("latin-1").partition(" ")
        if method.upper() != "CONNECT":
            await _answer(client_writer, "405 Method Not Allowed")
            return
        target = loopback_target(rest.split(" ", 1)[0])
        if target is None:
            log.warning("loopback proxy: refused CONNECT %s", rest)
            await _answer(client_writer, "403 Forbidden")
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*target)
        except OSError:
            await _answer(client_writer, "502 Bad Gateway")
            return
        self._writers.add(upstream_writer)
        try:
            client_writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await client_writer.drain()
            await asyncio.gather(_pipe(client_reader, upstream_writer), _pipe(upstream_reader, client_writer))
        finally:
            self._writers.discard(upstream_writer)
