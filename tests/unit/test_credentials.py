"""Who a resource acts as in Azure, which Secrets it depends on, where a Batch token may be sent (issue 13,
points 2, 3 and 11): the pure decisions, case by case."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from amlops.external.batchcompute_map import endpoint_allowed
from amlops.external.credentials import in_use, operator_identity_serves, secret_names
from amlops.settings import Settings

pytestmark = pytest.mark.unit


@dataclass(frozen=True)
class Serves:
    reason: str
    patterns: str
    namespace: str
    expected: bool


SERVES = [
    Serves("off by default: every namespace brings its own credentials", "", "team-a", False),
    Serves("every namespace", "*", "team-a", True),
    Serves("a named namespace", "platform", "platform", True),
    Serves("a named namespace is not a prefix", "platform", "platform-2", False),
    Serves("a glob", "team-*", "team-b", True),
    Serves("a glob does not match others", "team-*", "research", False),
    Serves("a list with spaces", "platform, team-*", "team-c", True),
    Serves("empty entries are ignored", ",,", "team-a", False),
]


@pytest.mark.parametrize("case", SERVES, ids=lambda c: c.reason)
def test_operator_identity_serves_only_the_namespaces_it_is_given(case: Serves) -> None:
    settings = Settings(operator_identity_namespaces=case.patterns)
    assert operator_identity_serves(settings, case.namespace) is case.expected


@dataclass(frozen=True)
class Uses:
    reason: str
    spec: dict[str, Any]
    default: str | None
    expected: set[str]


WS = {"workspace": {"name": "ws"}}
USES = [
    Uses("the resource's own Secret", {**WS, "credentials": {"secretRef": {"name": "sp"}}}, "ns-default", {"sp"}),
    Uses("the namespace default when the resource names none", WS, "ns-default", {"ns-default"}),
    Uses("nothing: the operator's identity", WS, None, set()),
    Uses(
        "a BatchCompute's shared key as well",
        {**WS, "batchCredentials": {"sharedKeySecretRef": {"name": "batch-key"}}},
        None,
        {"batch-key"},
    ),
    Uses(
        "a ParallelJob reaches Azure through its compute, not its own credentials",
        {"compute": {"name": "b"}},
        "d",
        set(),
    ),
]


@pytest.mark.parametrize("case", USES, ids=lambda c: c.reason)
def test_secret_names_a_resource_needs(case: Uses) -> None:
    assert secret_names(case.spec, case.default) == case.expected


def _obj(uid: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"uid": uid}, "spec": spec}


def test_a_secret_is_in_use_while_another_resource_needs_it() -> None:
    mine = _obj("1", {**WS, "credentials": {"secretRef": {"name": "sp"}}})
    other = _obj("2", {**WS, "credentials": {"secretRef": {"name": "sp"}}})
    unrelated = _obj("3", {**WS, "credentials": {"secretRef": {"name": "other"}}})
    assert in_use([mine, other, unrelated], "sp", None, but="1")
    assert not in_use([mine, unrelated], "sp", None, but="1"), "the resource being deleted does not count"
    assert not in_use([mine], "ns-default", "ns-default", but="1"), "mine names its own Secret"
    assert in_use([mine, _obj("4", WS)], "ns-default", "ns-default", but="1"), "4 falls back to the default"


@dataclass(frozen=True)
class Endpoint:
    reason: str
    url: str
    template: str
    expected: bool


AZURE = "https://{account}.{location}.batch.azure.com"
LOCAL = "https://127.0.0.1:8444/{account}"
ENDPOINTS = [
    Endpoint("the account's own endpoint on Azure", "https://acct.westeurope.batch.azure.com", AZURE, True),
    Endpoint("a trailing slash", "https://acct.westeurope.batch.azure.com/", AZURE, True),
    Endpoint("host names are case-insensitive", "https://ACCT.WestEurope.batch.azure.com", AZURE, True),
    Endpoint("another account's endpoint", "https://other.westeurope.batch.azure.com", AZURE, False),
    Endpoint("a host that only starts like it", "https://acct.westeurope.batch.azure.com.evil.example", AZURE, False),
    Endpoint("a location of two labels", "https://acct.evil.example.batch.azure.com", AZURE, False),
    Endpoint("plain http to Azure", "http://acct.westeurope.batch.azure.com", AZURE, False),
    Endpoint("any host at all", "https://collector.example", AZURE, False),
    Endpoint("the emulator's path-style endpoint", "https://127.0.0.1:8444/acct", LOCAL, True),
    Endpoint("another path on the emulator", "https://127.0.0.1:8444/other", LOCAL, False),
]


@pytest.mark.parametrize("case", ENDPOINTS, ids=lambda c: c.reason)
def test_a_batch_token_goes_only_to_the_accounts_own_endpoint(case: Endpoint) -> None:
    assert endpoint_allowed(case.url, case.template, "acct") is case.expected
