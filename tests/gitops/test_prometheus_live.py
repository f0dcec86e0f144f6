"""The real Prometheus server scraping the operator on the test bed: metrics arrive, the alert rules load and
evaluate, and every dashboard query is valid PromQL for it."""

from __future__ import annotations

import json
import re
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import amlops_testbed as testbed
from amlops.api import KINDS
from tests.gitops import gitops_support as gs
from tests.gitops.gitops_support import RULES, Prometheus, dashboard_exprs, running_prometheus

pytestmark = pytest.mark.e2e


def _api(prom: Prometheus, path: str, **params: str) -> Any:
    url = f"{prom.url}/api/v1/{path}" + ("?" + urllib.parse.urlencode(params) if params else "")
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.loads(response.read())
    assert body["status"] == "success", body
    return body["data"]


@pytest.fixture(scope="module")
def prom(k8s: testbed.Testbed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """One operator with the samples applied, scraped by one Prometheus with the chart's rules loaded."""
    namespace = f"prometheus-{uuid.uuid4().hex[:6]}"
    k8s.kubectl("create", "namespace", namespace)
    k8s.kubectl("apply", "-n", namespace, "-f", str(gs.REPO / "samples"))
    workdir = tmp_path_factory.mktemp("prometheus")
    # The emulator answers the AmlCompute sample, so its node-state gauges are real series.
    emulator = testbed.start_emulator(workdir / "emulator")
    try:
        with (
            testbed.start_operator(
                k8s, workdir / "operator.log", "--namespace", namespace, env=emulator.operator_env()
            ) as operator,
            running_prometheus([f"127.0.0.1:{operator.metrics_port}"], workdir, [RULES]) as prometheus,
        ):
            yield prometheus
    finally:
        emulator.stop()


def test_scrapes_reconcile_total(prom: Prometheus) -> None:
    def kinds() -> set[str]:
        result = _api(prom, "query", query='sum by (kind) (amlops_reconcile_total{job="amlops"})')["result"]
        return {r["metric"]["kind"] for r in result}

    # The operator reconciled the samples (every pass counts, whatever its result); a kind whose pass is
    # still retrying an unreachable Azure shows up once that pass ends, so wait for every kind.
    testbed.eventually(lambda: kinds() == {k.kind() for k in KINDS}, timeout=90, what="all kinds scraped")


def test_alert_rules_load_and_evaluate(prom: Prometheus) -> None:
    def evaluated() -> list[dict[str, Any]] | None:
        groups = _api(prom, "rules")["groups"]
        rules = [r for g in groups for r in g["rules"]]
        # A rule never evaluated reports Go's zero time, 0001-01-01T00:00:00Z.
        return rules if rules and not any(r["lastEvaluation"].startswith("0001-") for r in rules) else None

    rules = testbed.eventually(evaluated, timeout=60, what="every rule evaluated once")
    assert {r["health"] for r in rules} == {"ok"}, [(r["name"], r.get("lastError")) for r in rules]
    assert len(rules) == sum(1 for _ in re.finditer(r"^\s+- alert: ", RULES.read_text(), re.MULTILINE))


@pytest.mark.parametrize("expr", dashboard_exprs())
def test_dashboard_query_is_valid(prom: Prometheus, expr: str) -> None:
    # Grafana's variables as "everything": the regex matchers become .*, the rate window one minute.
    query = re.sub(r"\$\w+", ".*", expr.replace("$__rate_interval", "1m"))
    assert "$" not in query
    _api(prom, "query", query=query)


def test_compute_nodes_scraped(prom: Prometheus) -> None:
    testbed.eventually(
        lambda: "amlops_reconcile_total" in _api(prom, "label/__name__/values"), timeout=60, what="first scrape"
    )
    result = testbed.eventually(
        lambda: _api(prom, "query", query='amlops_compute_nodes{name="cpu-cluster"}')["result"],
        timeout=90,
        what="amlops_compute_nodes scraped",
    )
    assert {r["metric"]["state"] for r in result} >= {"idle", "running", "preparing", "leaving"}
