"""Per-tenant cache entries are released when no object uses them any more (``amlops.azure.leases``)."""

from __future__ import annotations

import pytest

from amlops.azure.clients import AzureClients
from amlops.azure.leases import Leases
from amlops.azure.ml import WorkspaceId
from amlops.settings import Settings

pytestmark = pytest.mark.unit
SP = {"AZURE_TENANT_ID": "t", "AZURE_CLIENT_ID": "c", "AZURE_CLIENT_SECRET": "s"}


def test_an_entry_is_released_with_its_last_user() -> None:
    leases = Leases[str]()
    assert leases.hold("a", "ml", "team-a") == []
    assert leases.hold("b", "ml", "team-a") == [], "shared by two objects"
    assert leases.hold("a", "ml", "team-a") == [], "every pass holds it again: no change"
    assert leases.holders("team-a") == 2
    assert leases.release("a") == [], "b still uses it"
    assert leases.release("b") == ["team-a"], "the last user is gone"
    assert leases.holders("team-a") == 0
    assert leases.release("b") == [], "releasing twice is harmless"


def test_a_replaced_entry_is_released_when_nobody_else_holds_it() -> None:
    leases = Leases[str]()
    leases.hold("a", "credential", "secret-v1")
    leases.hold("b", "credential", "secret-v1")
    assert leases.hold("a", "credential", "secret-v2") == [], "b still uses v1"
    assert leases.hold("b", "credential", "secret-v2") == ["secret-v1"], "the rotated secret's entry goes"
    assert leases.release("a") == []
    assert leases.release("b") == ["secret-v2"]


def test_slots_are_independent() -> None:
    leases = Leases[tuple[str, str]]()
    leases.hold("job", "batch", ("batch", "acct"))
    leases.hold("job", "store", ("store", "s1"))
    leases.hold("compute", "batch", ("batch", "acct"))
    assert sorted(leases.release("job")) == [("store", "s1")]
    assert leases.release("compute") == [("batch", "acct")]


async def test_azure_clients_close_what_no_object_uses_any_more() -> None:
    clients = AzureClients(Settings(static_token="t", arm_endpoint="https://127.0.0.1:1"))
    ws = WorkspaceId("sub", "rg", "ws")
    try:
        team_a = clients.ml("secret:a/sp:1", "sub", SP, user="uid-a1")
        assert clients.ml("secret:a/sp:1", "sub", SP, user="uid-a2") is team_a
        clients.workspace_poller("secret:a/sp:1", team_a, ws, user="uid-a1")
        clients.ml("default", "sub", user="uid-b")
        clients.batch("https://acct.batch", "acct", None, "default", user="uid-job")
        assert (len(clients._ml), len(clients._batch), len(clients.pollers)) == (2, 1, 1)

        await clients.release("uid-a1")
        assert len(clients._ml) == 2, "uid-a2 still uses team a's client"
        assert len(clients.pollers) == 0, "only uid-a1 read that workspace"
        await clients.release("uid-a2")
        assert list(clients._ml) == [("default", "sub")], "team a's client is closed and dropped"
        assert "secret:a/sp:1" not in clients._credentials, "and its credential"
        await clients.release("uid-job")
        assert clients._batch == {}
        assert "default" in clients._credentials, "uid-b still uses the default credential"
        await clients.release("uid-b")
        assert clients._ml == {}
        assert clients._credentials == {}
    finally:
        await clients.close()
