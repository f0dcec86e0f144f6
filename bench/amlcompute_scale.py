"""Bench: N AmlComputes in one workspace applied at once → all Ready. Prints one JSON object.

Real parts only: the Kubernetes test bed, the ARM emulator (its write buckets raised so the bench measures
amlops, not the default ARM throttle), and the operator as a process. Reports wall time to all Ready, ARM
calls by operation, apiserver requests, the operator's peak RSS, and ARM reads in one steady poll interval.

``--arm-limits real`` runs the emulator with ARM's documented buckets (reads 250 + 25/s, writes and deletes
200 + 10/s): the operator paces itself to them (``azure/pacing.py``), and the JSON gives the floor the writes
bucket allows for the share of it amlops may use (``--share``, the chart's ``azure.armBudgetShare``), the 429s ARM
answered, and PUTs and GETs per create. ``--delete`` then deletes every object and reports the same for deletes.
``raised`` (the default) lifts the buckets to 100,000 so that the bench measures amlops alone.

"Applied at once" means every object is submitted as fast as the apiserver takes them: server-side apply
PATCHes over one HTTP/1.1 connection pool with many requests in flight (what a GitOps controller syncing a
large folder does). One ``kubectl apply -f`` of a thousand documents walks them one by one and is mostly
kubectl's own time, not the cluster's; ``apply_seconds`` reports the submission alone.

    uv run python bench/amlcompute_scale.py --count 1000
    uv run python bench/amlcompute_scale.py --count 1000 --arm-limits real --delete
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

import amlops_testbed as testbed
from amlops.status import is_true

REPO = Path(__file__).resolve().parents[1]
WORKSPACE = {
    "subscriptionId": "00000000-0000-0000-0000-000000000001",
    "resourceGroup": "rg-amlops",
    "name": "ws-amlops",
}


APPLY_CONCURRENCY = 32


def _apiserver_requests(bed: testbed.Testbed) -> dict[str, int]:
    """apiserver_request_total by resource[/subresource] and verb: ``{"amlcomputes/status PATCH": 1000}``."""
    return testbed.apiserver_requests(bed, ("amlcomputes", "events"))


def _events_by_reason(bed: testbed.Testbed, namespace: str) -> dict[str, int]:
    """Events amlops posted, by reason (each status change posts one): shows which transitions repeat."""
    _, body = bed.get(f"/api/v1/namespaces/{namespace}/events?limit=100000")
    reasons: dict[str, int] = {}
    for item in json.loads(body or b"{}").get("items", []):
        reason = str(item.get("reason"))
        reasons[reason] = reasons.get(reason, 0) + int(item.get("count") or 1)
    return dict(sorted(reasons.items()))


def _delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in sorted(after.items()) if v - before.get(k, 0)}


async def _apply_all(session: aiohttp.ClientSession, base: str, docs: list[dict[str, Any]]) -> None:
    """Server-side apply of every document, ``APPLY_CONCURRENCY`` requests in flight."""
    gate = asyncio.Semaphore(APPLY_CONCURRENCY)
    headers = {"Content-Type": "application/apply-patch+yaml"}

    async def apply(doc: dict[str, Any]) -> None:
        async with gate:
            url = f"{base}/{doc['metadata']['name']}?fieldManager=bench&force=true"
            async with session.patch(url, data=json.dumps(doc), headers=headers) as response:
                if response.status >= 300:
                    text = await response.text()
                    raise RuntimeError(f"apply {doc['metadata']['name']}: {response.status} {text}")

    await asyncio.gather(*(apply(doc) for doc in docs))


# ARM's documented per-subscription buckets (size, refill per second): what ``--arm-limits real`` runs with.
REAL_BUCKETS = {"reads": (250, 25.0), "writes": (200, 10.0), "deletes": (200, 10.0)}
RAISED = 100_000


def floor_seconds(count: int, kind: str, share: float) -> float:
    """The least time ``count`` requests of ``kind`` can take when amlops uses ``share`` of the bucket: the share
    of the bucket at once, the rest at the share of the refill."""
    size, refill = REAL_BUCKETS[kind]
    return max(0.0, count - share * size) / (share * refill)


def arm_answers(stats: dict[str, Any]) -> dict[str, int]:
    """Requests and 429 answers over every ARM operation of an emulator's statistics."""
    operations = stats["operations"].values()
    return {
        "requests": sum(int(op["count"]) for op in operations),
        "answered_429": sum(int(op["statuses"].get("429", 0)) for op in operations),
    }


async def _delete_all(session: aiohttp.ClientSession, base: str, names: list[str], within: float) -> float:
    """Delete every object at once and wait until the apiserver has none: seconds taken."""
    gate = asyncio.Semaphore(APPLY_CONCURRENCY)
    started = time.monotonic()

    async def delete(name: str) -> None:
        async with gate, session.delete(f"{base}/{name}") as response:
            if response.status >= 300 and response.status != 404:
                raise RuntimeError(f"delete {name}: {response.status} {await response.text()}")

    await asyncio.gather(*(delete(name) for name in names))
    async with asyncio.timeout(within):
        while True:
            async with session.get(f"{base}?limit=1") as response:
                if not (await response.json()).get("items"):
                    return time.monotonic() - started
            await asyncio.sleep(1)  # polling interval of a wait with a deadline


def _program(proc: subprocess.Popen[bytes]) -> str:
    """The program's name (etcd, kube-apiserver) of a test bed process, started from an argument list."""
    args = proc.args
    assert isinstance(args, list), args
    return Path(str(args[0])).name


def _machine_seconds() -> dict[str, float]:
    """This machine's CPU time so far, all cores: busy, and stolen by the hypervisor (other tenants)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    tick = os.sysconf("SC_CLK_TCK")
    return {"busy": (user + nice + system + irq + softirq) / tick, "steal": steal / tick}


def _phase(status: dict[str, Any]) -> str:
    """unseen (amlops has written no status yet), creating (in Azure), ready, or other."""
    if not status:
        return "unseen"
    if is_true(status.get("conditions") or [], "Ready"):
        return "ready"
    return "creating" if status.get("provisioningState") == "Creating" else "other"


class Phases:
    """Each object's phase, with the count per phase kept as it changes (the watch loop asks after every event)."""

    def __init__(self) -> None:
        self._of: dict[str, str] = {}
        self.counts: Counter[str] = Counter()

    def set(self, name: str, phase: str) -> None:
        old = self._of.get(name)
        if old is not None:
            self.counts[old] -= 1
        self._of[name] = phase
        self.counts[phase] += 1

    def __len__(self) -> int:
        return len(self._of)


async def _watch_until_ready(session: aiohttp.ClientSession, base: str, count: int, phases: Phases) -> None:
    """Follow the objects through one watch until ``count`` are Ready. A watch, not a listing per second:
    listing a thousand objects every second cost the apiserver and this 2-core machine more than the
    operator's own writes, and the bench should measure the operator."""
    rv = await _list(session, base, phases)
    while phases.counts["ready"] < count:
        url = f"{base}?watch=1&allowWatchBookmarks=true&resourceVersion={rv}"
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=None, sock_read=None)) as response:
            if response.status == 410:  # the watch window moved on: list again
                rv = await _list(session, base, phases)
                continue
            async for line in response.content:
                event = json.loads(line)
                obj = event.get("object") or {}
                rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
                if event.get("type") == "ERROR":
                    rv = await _list(session, base, phases)
                    break
                if event.get("type") in ("ADDED", "MODIFIED"):
                    phases.set(obj["metadata"]["name"], _phase(obj.get("status") or {}))
                if phases.counts["ready"] >= count:
                    return


async def _list(session: aiohttp.ClientSession, base: str, phases: Phases) -> str:
    """Every object's phase now; the list's resourceVersion to watch from. An apiserver busy with the operator's
    writes may answer 429 or time out: the bench asks again (a few times), it does not fail the run."""
    for attempt in range(10):
        async with session.get(base) as response:
            body = await response.json()
            if response.status == 200:
                break
        print(f"listing answered {response.status}: {body.get('message')}", file=sys.stderr)
        await asyncio.sleep(1 + attempt)  # back-off before asking again
    else:
        raise RuntimeError(f"listing kept failing: {body}")
    for item in body.get("items", []):
        phases.set(item["metadata"]["name"], _phase(item.get("status") or {}))
    return str(body["metadata"]["resourceVersion"])


async def _apply_and_wait(
    bed: testbed.Testbed, namespace: str, docs: list[dict[str, Any]], within: float, ready: int | None = None
) -> tuple[float, float, list[dict[str, float]]]:
    """Apply every document at once and follow them to Ready (``ready`` objects in the namespace: the documents
    and those applied before them): (apply seconds, wall seconds, timeline)."""
    base = f"{bed.server}/apis/amlops.io/v1alpha1/namespaces/{namespace}/amlcomputes"
    connector = aiohttp.TCPConnector(ssl=bed.ssl_context(), limit=APPLY_CONCURRENCY + 1)
    phases = Phases()
    timeline: list[dict[str, float]] = []
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.monotonic()

        def sample() -> None:
            seen = len(phases) - phases.counts["unseen"]
            counts = {p: phases.counts[p] for p in ("creating", "ready")}
            unseen = (ready or len(docs)) - seen
            timeline.append({"seconds": round(time.monotonic() - started, 1), "unseen": unseen, **counts})

        async def every_5_seconds() -> None:
            while True:
                await asyncio.sleep(5)
                sample()

        sampler = asyncio.create_task(every_5_seconds())
        watch = asyncio.create_task(_watch_until_ready(session, base, ready or len(docs), phases))
        await _apply_all(session, base, docs)
        applied = time.monotonic() - started
        try:
            async with asyncio.timeout(within):
                await watch
        except TimeoutError:
            raise TimeoutError(
                f"not all Ready within {within} s: {timeline[-1] if timeline else dict(phases.counts)}"
            ) from None
        finally:
            sampler.cancel()
        wall = time.monotonic() - started
        sample()
    return applied, wall, timeline


async def _delete_measured(
    bed: testbed.Testbed, emulator: testbed.EmulatorRun, docs: list[dict[str, Any]], args: argparse.Namespace
) -> dict[str, Any]:
    base = f"{bed.server}/apis/amlops.io/v1alpha1/namespaces/bench/amlcomputes"
    connector = aiohttp.TCPConnector(ssl=bed.ssl_context(), limit=APPLY_CONCURRENCY + 1)
    async with aiohttp.ClientSession(connector=connector) as session:
        seconds = await _delete_all(session, base, [d["metadata"]["name"] for d in docs], args.timeout)
    stats = emulator.control("GET", "/stats")
    answers = arm_answers(stats)
    deletes = emulator.operations().get("MachineLearningCompute_Delete", 0)
    return {
        "wall_seconds_to_all_gone": round(seconds, 2),
        "arm_requests": answers["requests"],
        "arm_answered_429": answers["answered_429"],
        "arm_429_percent": round(100 * answers["answered_429"] / max(1, answers["requests"]), 2),
        "deletes_per_object": round(deletes / len(docs), 3),
        "deletes_floor_seconds": round(floor_seconds(len(docs), "deletes", args.share), 1),
        "arm_calls_by_operation": emulator.operations(),
    }


def _memory_dump(operator: testbed.OperatorRun, probe: Path) -> dict[str, Any]:
    """Where the operator's memory is now (bench/memory_probe.py; the operator runs under it)."""
    probe.unlink(missing_ok=True)
    operator.proc.send_signal(signal.SIGUSR2)
    testbed.eventually(probe.exists, what="the operator's memory dump", timeout=120)
    dumped: dict[str, Any] = json.loads(probe.read_text())
    return dumped


def _steps(
    bed: testbed.Testbed,
    operator: testbed.OperatorRun,
    docs: list[dict[str, Any]],
    args: argparse.Namespace,
    probe: Path | None,
) -> dict[str, Any]:
    """Grow one operator's load step by step (``--steps 1000,2000,4000,10000``: the total after each step) and
    say what each added object costs: memory and CPU seconds per object added, which should not grow with the
    count; and what keeping every object's status fresh costs per object and poll interval. Each step is
    measured once its objects are Ready and two steady poll intervals have passed (a measurement window, not
    synchronisation), so the figures are those of a steady operator of that size."""
    totals = [int(n) for n in args.steps.split(",")]
    pid = operator.proc.pid
    rows: list[dict[str, Any]] = []
    before = {"count": 0, "rss_mb": testbed.rss_mb(pid), "cpu_seconds": testbed.cpu_seconds(pid)}
    for total in totals:
        new = docs[int(before["count"]) : total]
        cpu = testbed.cpu_seconds(pid)
        _, wall, _ = asyncio.run(_apply_and_wait(bed, "bench", new, args.timeout, ready=total))
        cpu_to_ready = testbed.cpu_seconds(pid) - cpu
        print(f"{total} Ready in {wall:.1f} s; steady window", file=sys.stderr, flush=True)
        steady_from = testbed.cpu_seconds(pid)
        time.sleep(2 * args.poll_interval)  # a measurement window (steady state), not synchronisation
        row = {"count": total, "rss_mb": testbed.rss_mb(pid), "cpu_seconds": testbed.cpu_seconds(pid)}
        added = total - int(before["count"])
        # Keeping every object's status fresh (a pass per object per poll interval) should cost the same per
        # object at any count.
        steady_cpu_per_second = (row["cpu_seconds"] - steady_from) / (2 * args.poll_interval)
        rows.append(
            {
                **row,
                "peak_rss_mb": testbed.peak_rss_mb(pid),
                "wall_seconds_to_all_ready": round(wall, 2),
                "cpu_seconds_to_all_ready": round(cpu_to_ready, 1),
                "marginal_kb_per_object": round((row["rss_mb"] - before["rss_mb"]) * 1024 / added, 1),
                "cpu_ms_per_added_object": round((row["cpu_seconds"] - before["cpu_seconds"]) * 1000 / added, 1),
                "steady_cpu_ms_per_object_per_interval": round(
                    steady_cpu_per_second * args.poll_interval * 1000 / total, 2
                ),
                **({"memory": _memory_dump(operator, probe)} if probe is not None else {}),
            }
        )
        before = row
    return {
        "bench": "amlcompute_scale_steps",
        "operator_allocator": testbed.allocator_name(),
        "arm_limits": args.arm_limits,
        "poll_interval": args.poll_interval,
        "steps": rows,
        # The chart's default operator memory limit (charts/amlops/values.yaml resources.limits.memory).
        "chart_memory_limit_mb": 512,
        "targets": {"marginal_kb_per_object": 25, "peak_rss_mb_at_10000": 512},
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--poll-interval", type=float, default=10.0, help="steady poll interval (ceiling)")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--keep", action="store_true", help="keep the work folder (operator, emulator logs)")
    parser.add_argument("--arm-limits", choices=("real", "raised"), default="raised", help="ARM buckets (see above)")
    parser.add_argument("--share", type=float, default=0.8, help="AMLOPS_ARM_BUDGET_SHARE (chart: armBudgetShare)")
    parser.add_argument("--delete", action="store_true", help="then delete every object and measure that too")
    parser.add_argument("--steps", help="totals applied one after another, e.g. 1000,2000,4000,10000 (see _steps)")
    parser.add_argument(
        "--trace-memory",
        action="store_true",
        help="run the operator under tracemalloc (bench/memory_probe.py; slower) and report where its memory is",
    )
    parser.add_argument(
        "--malloc-stats",
        action="store_true",
        help="report the allocators' live and free-but-kept memory after each step (bench/memory_probe.py)",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="amlops-bench-"))
    succeeded = False
    bed = testbed.start(testbed.ensure_built(), work / "testbed")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        testbed.install_crds(bed, REPO / "crds")
        bed.kubectl("create", "namespace", "bench")
        extra: list[str] = []
        for kind, (size, refill) in REAL_BUCKETS.items():
            raised = args.arm_limits == "raised"
            extra += [f"--{kind}-bucket", str(RAISED if raised else size)]
            extra += [f"--{kind}-refill", str(RAISED if raised else refill)]
        emulator = testbed.start_emulator(work / "emulator", "--no-batch", *extra, speed=600)
        procs.append(emulator.proc)
        # Raised buckets are a subscription with larger limits, and the operator is told so (the chart's
        # azure.armBuckets), as a user of such a subscription would: it paces, and spaces its listings, by them.
        raised_buckets = ",".join(f"{kind}={RAISED}:{RAISED}" for kind in REAL_BUCKETS)
        env = emulator.operator_env(
            AMLOPS_POLL_FLOOR_SECONDS="1",
            AMLOPS_POLL_CEILING_SECONDS=str(args.poll_interval),
            AMLOPS_REQUEUE_SECONDS="2",
            AMLOPS_ARM_BUDGET_SHARE=str(args.share),
            **({"AMLOPS_ARM_BUCKETS": raised_buckets} if args.arm_limits == "raised" else {}),
        )
        launched = time.monotonic()
        probe = work / "memory.json"
        probed = args.trace_memory or args.malloc_stats
        tracing = ("-X", "tracemalloc=8") if args.trace_memory else ()
        command = (
            (sys.executable, *tracing, str(REPO / "bench" / "memory_probe.py"), str(probe), "run")
            if probed
            else testbed.OPERATOR_COMMAND
        )
        operator = testbed.start_operator(
            bed, work / "operator.log", "-n", "bench", env=env, wait=False, command=command
        )
        procs.append(operator.proc)
        docs = [
            {
                "apiVersion": "amlops.io/v1alpha1",
                "kind": "AmlCompute",
                "metadata": {"name": f"c{i:05d}"},
                "spec": {"workspace": WORKSPACE, "vmSize": "STANDARD_D1_V2", "scaleSettings": {"maxNodeCount": 1}},
            }
            for i in range(max(args.count, *(int(n) for n in (args.steps or "0").split(","))))
        ]
        # The clock starts with a running operator (kopf serves liveness once its startup handlers are done):
        # what is measured is reconciling N objects, not importing the operator.
        operator.wait_live(timeout=120)
        startup = time.monotonic() - launched
        if args.steps:
            steps = _steps(bed, operator, docs, args, probe if probed else None)
            print(json.dumps({**steps, "operator_startup_seconds": round(startup, 2)}))
            succeeded = True
            return 0
        api_before = _apiserver_requests(bed)
        # Every process shares this machine's cores: where the CPU went shows what limits the wall time.
        cpu_of = {
            "operator": operator.proc.pid,
            "emulator": emulator.proc.pid,
            **{_program(p): p.pid for p in bed.processes},
        }
        cpu_before = {name: testbed.cpu_seconds(pid) for name, pid in cpu_of.items()}
        machine_before = _machine_seconds()
        applied, wall, timeline = asyncio.run(_apply_and_wait(bed, "bench", docs, args.timeout))
        stats_to_ready = emulator.control("GET", "/stats")
        calls = emulator.operations()
        machine = {k: round(v - machine_before[k], 1) for k, v in _machine_seconds().items()}
        cpu_to_ready = {name: round(testbed.cpu_seconds(pid) - cpu_before[name], 1) for name, pid in cpu_of.items()}
        api_requests = _delta(_apiserver_requests(bed), api_before)
        # Steady state: ARM reads over two poll intervals once everything is Ready. One list *call* pages
        # through the workspace (the emulator's page size is 50), so pages / pages-per-call = list calls.
        emulator.control("DELETE", "/stats")
        window = 2 * args.poll_interval
        time.sleep(window)  # a measurement window, not synchronisation
        steady = emulator.operations()
        pages_per_call = -(-args.count // 50)
        list_calls = steady.get("MachineLearningCompute_ListByWorkspace", 0) / pages_per_call
        answers = arm_answers(stats_to_ready)
        result = {
            "bench": "amlcompute_scale",
            "operator_allocator": testbed.allocator_name(),
            "count": args.count,
            "arm_limits": args.arm_limits,
            "arm_budget_share": args.share,
            "arm_requests_to_all_ready": answers["requests"],
            "arm_answered_429_to_all_ready": answers["answered_429"],
            "arm_429_percent": round(100 * answers["answered_429"] / max(1, answers["requests"]), 2),
            "puts_per_create": round(calls.get("MachineLearningCompute_CreateOrUpdate", 0) / args.count, 3),
            "gets_per_create": round(calls.get("MachineLearningCompute_Get", 0) / args.count, 3),
            # The least time the writes bucket allows: for the share amlops may use, and for the whole bucket.
            "writes_floor_seconds": round(floor_seconds(args.count, "writes", args.share), 1),
            "writes_floor_seconds_whole_bucket": round(floor_seconds(args.count, "writes", 1.0), 1),
            "wall_over_floor": round(wall / max(1e-9, floor_seconds(args.count, "writes", args.share)), 2)
            if args.arm_limits == "real"
            else None,
            "operator_startup_seconds": round(startup, 2),
            "apply_seconds": round(applied, 2),
            "wall_seconds_to_all_ready": round(wall, 2),
            "timeline": timeline,
            "arm_calls_by_operation": calls,
            "apiserver_requests_amlcomputes": sum(v for k, v in api_requests.items() if k.startswith("amlcomputes")),
            "apiserver_requests_by_verb": api_requests,
            "operator_peak_rss_mb": testbed.peak_rss_mb(operator.proc.pid),
            "cpu_seconds_to_all_ready": cpu_to_ready,
            # The whole machine over the same time: what the cores had (cores x wall), used and lost to steal.
            "machine_cpu_seconds_to_all_ready": {"cores": os.cpu_count(), **machine},
            "events_by_reason": _events_by_reason(bed, "bench"),
            "steady_window_seconds": window,
            "steady_arm_calls_by_operation": steady,
            "steady_list_calls_per_workspace_per_interval": round(list_calls * args.poll_interval / window, 2),
            "targets": {"wall_seconds": 30, "steady_list_calls_per_workspace_per_interval": 1, "rss_mb": 300},
        }
        if args.trace_memory:
            result["memory"] = _memory_dump(operator, probe)
        if args.delete:
            emulator.control("DELETE", "/stats")
            result["delete"] = asyncio.run(_delete_measured(bed, emulator, docs, args))
        if args.keep:
            result["work"] = str(work)
        print(json.dumps(result))
        succeeded = True
        return 0
    finally:
        for proc in reversed(procs):
            testbed.terminate(proc, grace=20)
        bed.stop()
        if succeeded and not args.keep:  # a failed run keeps its logs (operator, emulator, apiserver) for a look
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
