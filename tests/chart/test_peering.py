"""Two replicas as the chart runs them (``--peering``, the chart's peering CRD and object): exactly one works.

kopf pauses every operator when it sees a live peer with the same priority ("Possibly conflicting operators
with the same priority ... Pausing all operators, including self"), so ``amlops run`` gives every replica a
random priority: the highest is active, the other stands by.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import amlops_testbed as testbed

from .conftest import Release

pytestmark = pytest.mark.e2e
SAMPLES = Path(__file__).resolve().parents[2] / "samples"
FROZEN = "Pausing all operators, including self"


@pytest.fixture
def replicas() -> Iterator[list[testbed.OperatorRun]]:
    started: list[testbed.OperatorRun] = []
    yield started
    for replica in started:
        replica.stop(grace=30)


def test_two_replicas_elect_one_active_operator(
    k8s: testbed.Testbed,
    namespace: str,
    install_chart: Callable[..., Release],
    replicas: list[testbed.OperatorRun],
    tmp_path: Path,
) -> None:
    install_chart(namespace, "replicas=2", f"watchNamespaces={{{namespace}}}")
    # The arguments the chart's Deployment passes (no liveness here: two replicas on one host), and the pod
    # name kopf takes as its identity.
    for pod in ("amlops-0", "amlops-1"):
        replica = testbed.start_operator(
            k8s,
            tmp_path / f"{pod}.log",
            f"--namespace={namespace}",
            "--peering=amlops",
            # --verbose: kopf's per-object "succeeded" lines, which count the handler runs below, are DEBUG.
            "--verbose",
            env={"POD_ID": pod},
            liveness=False,
        )
        replicas.append(replica)

    def peers() -> set[str]:
        out = k8s.kubectl("get", "kopfpeering", "amlops", "-n", namespace, "-o", "jsonpath={.status}")
        return set(json.loads(out or "{}"))

    testbed.eventually(lambda: peers() == {"amlops-0", "amlops-1"}, timeout=90, what="both replicas peered")
    k8s.kubectl("apply", "-n", namespace, "-f", str(SAMPLES / "amlcompute.yaml"))

    def reconciled_or_frozen() -> str | None:
        if any(FROZEN in replica.output() for replica in replicas):
            return "frozen"
        obj = testbed.get_object(k8s, "amlcompute", "cpu-cluster", namespace)
        return "reconciled" if obj and (obj.get("status") or {}).get("observedGeneration") else None

    assert testbed.eventually(reconciled_or_frozen, timeout=60, what="a replica acts") == "reconciled"

    def handled() -> list[int]:
        # Handler activity per replica: kopf logs every handler run ("Handler 'reconcile' succeeded.") and the
        # work queue every pass ("Pass of AmlCompute ... done").
        runs = ("kopf.objects: Handler '", "amlops.handlers.workqueue: Pass of ")
        lines = [replica.output().splitlines() for replica in replicas]
        return [sum(1 for line in replica if any(run in line for run in runs)) for replica in lines]

    # kopf pauses a replica when it sees a higher-priority peer, but a watch stream already open may still
    # deliver an event or two to it (harmless: every pass is idempotent). What must hold is the steady state:
    # one replica keeps reconciling (the sample retries every few seconds), the other does nothing more.
    testbed.eventually(lambda: max(handled()) >= 2, timeout=90, what="the active replica handled the sample")
    before = handled()
    active = before.index(max(before))
    testbed.eventually(lambda: handled()[active] >= before[active] + 2, timeout=90, what="the active replica goes on")
    after = handled()
    assert [a - b for i, (a, b) in enumerate(zip(after, before, strict=True)) if i != active] == [0], (
        f"the standby replica kept reconciling: {before} -> {after}"
    )
