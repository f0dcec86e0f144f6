"""ARM pacing end to end (issue 20): with small buckets in the emulator (ARM's token buckets, the request limits
and throttling page cited in ``amlops_emulator/arm/throttle.py``), a burst of AmlComputes converges and ARM
answers none of the operator's requests 429: the operator paces itself to the buckets (``azure/pacing.py``)
instead of learning them from refusals. Not timed: what is asserted is the emulator's count of answers, and the
apiserver's of status writes: the creates whose turn is seconds away end their pass and come back at their turn
(``pacing.deferring``), writing nothing meanwhile."""

from __future__ import annotations

import pytest

import amlops_testbed as testbed
from tests.support.objects import apply, events, wait_condition
from tests.support.processes import StartAzure, StartOperator, scrape

from .test_amlcompute import compute_name, manifest

pytestmark = pytest.mark.e2e

COUNT = 16
# A tenth of ARM's documented writes bucket (200 + 10/s) and an eighth of its reads one (250 + 25/s): a burst of
# COUNT creates is more than the writes bucket holds, so an unpaced operator is answered 429.
BUCKETS = {"writes": (8, 2.0), "reads": (30, 5.0)}
STATUS_PATCH = "amlcomputes/status PATCH"


def test_a_burst_of_creates_converges_with_no_429_under_small_buckets(
    k8s: testbed.Testbed, namespace: str, start_operator: StartOperator, start_azure: StartAzure
) -> None:
    flags = [f"--{kind}-{what}" for kind in BUCKETS for what in ("bucket", "refill")]
    values = [str(v) for size, refill in BUCKETS.values() for v in (size, refill)]
    azure = start_azure(60.0, *[x for pair in zip(flags, values, strict=True) for x in pair])
    setting = ",".join(f"{kind}={size}:{refill}" for kind, (size, refill) in BUCKETS.items())
    operator = start_operator(namespace, extra_env={**azure.operator_env(), "AMLOPS_ARM_BUCKETS": setting})
    azure.control("DELETE", "/stats")
    patches = testbed.apiserver_requests(k8s, ("amlcomputes",)).get(STATUS_PATCH, 0)

    names = [f"paced-{i}" for i in range(COUNT)]
    apply(k8s, namespace, "---\n".join(manifest(name, compute_name()) for name in names))
    for name in names:
        wait_condition(k8s, "amlcompute", name, namespace, "Ready", timeout=300)

    stats = azure.control("GET", "/stats")["operations"]
    throttled = {name: op["statuses"]["429"] for name, op in stats.items() if op["statuses"].get("429")}
    assert throttled == {}, f"answered 429: {throttled}"
    puts = stats["MachineLearningCompute_CreateOrUpdate"]["count"]
    assert puts == COUNT, "one PUT per compute: none was refused and sent again"
    samples = scrape(operator.metrics_url, "amlops_azure_deferred")
    deferred = samples.get(("amlops_azure_deferred_total", frozenset({"service": "arm", "bucket": "writes"}.items())))
    assert deferred, "creates whose turn was seconds away ended their pass (else this test shows nothing)"
    # Issue 20 point 3 under pacing: Creating, then Ready; a pass deferred to its turn writes nothing. (This test's
    # operator is the only writer of AmlComputes.)
    written = testbed.apiserver_requests(k8s, ("amlcomputes",)).get(STATUS_PATCH, 0) - patches
    assert written <= 2 * COUNT, f"{written} status writes for {COUNT} objects"
    posted = sorted((e["involvedObject"]["name"], e["reason"], e.get("count", 1)) for e in events(k8s, namespace))
    assert posted == sorted((name, reason, 1) for name in names for reason in ("Creating", "Succeeded"))
