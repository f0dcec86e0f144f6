"""When the SDK transports trust the environment (``use_env_settings``): only when it has a proxy variable or a
``.netrc`` for aiohttp's ``trust_env`` to find (otherwise two executor hops a request find nothing)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import certifi
import pytest

from amlops.azure.blob import BlobStore
from amlops.azure.clients import AzureClients
from amlops.azure.pipeline import env_settings_in_use
from amlops.settings import Settings

pytestmark = pytest.mark.unit

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
AZURITE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:1/a;"
)


@dataclass(frozen=True)
class Case:
    why: str
    env: dict[str, str] = field(default_factory=dict)
    home_netrc: bool = False
    trusted: bool = False


CASES = [
    Case("nothing to find: the hops would find nothing"),
    Case("a proxy for https", {"HTTPS_PROXY": "http://proxy:3128"}, trusted=True),
    Case("lower case, as curl writes it", {"https_proxy": "http://proxy:3128"}, trusted=True),
    Case("only hosts not to proxy: kept, aiohttp reads them", {"NO_PROXY": "127.0.0.1"}, trusted=True),
    Case("a .netrc in the home directory", home_netrc=True, trusted=True),
    Case("NETRC names a file", {"NETRC": "{tmp}/creds"}, trusted=True),
    Case("NETRC names no file, and the home has none", {"NETRC": "{tmp}/missing"}),
]


@pytest.mark.parametrize("case", CASES, ids=[c.why for c in CASES])
def test_env_settings_in_use(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*PROXY_VARIABLES, *(v.lower() for v in PROXY_VARIABLES), "NETRC"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "creds").write_text("machine proxy login a password b\n")
    if case.home_netrc:
        (tmp_path / ".netrc").write_text("machine proxy login a password b\n")
    for name, value in case.env.items():
        monkeypatch.setenv(name, value.format(tmp=tmp_path))

    assert env_settings_in_use() is case.trusted


def _without_then_with_a_proxy(
    probe: Callable[[], Awaitable[bool]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> list[bool]:
    """What ``probe`` says of a transport built with no proxy variable, then with HTTPS_PROXY set."""
    for name in (*PROXY_VARIABLES, *(v.lower() for v in PROXY_VARIABLES), "NETRC"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))

    async def both() -> list[bool]:
        trusted = [await probe()]
        monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
        return [*trusted, await probe()]

    return asyncio.run(both())


def test_a_blob_store_trusts_the_environment_as_said(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def probe() -> bool:
        async with BlobStore.from_connection_string(AZURITE) as store:
            transport: Any = store._service._pipeline._transport  # the SDK's own: nothing public says it
            while not hasattr(transport, "_use_env_settings"):
                transport = transport._transport
            return bool(transport._use_env_settings)

    assert _without_then_with_a_proxy(probe, tmp_path, monkeypatch) == [False, True]


def test_the_shared_ca_bundle_transport_trusts_the_environment_as_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With AMLOPS_CA_BUNDLE, ARM and Batch requests go through a session of ours, not the SDK's: it must follow a
    proxy the same way, or a proxied cluster with its own CA would bypass its proxy."""

    async def probe() -> bool:
        clients = AzureClients(Settings(ca_bundle=Path(certifi.where())))
        assert clients._transport() is not None
        assert clients._session is not None
        trusted = clients._session.trust_env
        await clients.close()
        return trusted

    assert _without_then_with_a_proxy(probe, tmp_path, monkeypatch) == [False, True]
