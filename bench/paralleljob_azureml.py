"""Bench: N Azure ML jobs on one AmlCompute applied at once → all Complete: ParallelJobs on the Azure ML backend
(``--kind paralleljob``, the default) or CommandJobs (``--kind commandjob``). Prints one JSON object.

Real parts only: the Kubernetes test bed, the operator as a process, the emulator with Azurite (``--azurite``: the
workspace's default datastore), whose Azure ML runs each job on the cluster's nodes; the operator submits every job
with azure-ai-ml's ``MLClient``. A ParallelJob has a tiny ``uri_folder`` input (two files, one per mini-batch), a fast
entry script and an ``appendRowTo`` output; a CommandJob runs one short script. Both come from one ConfigMap.

Reported:

- ``wall_seconds_to_all_complete``: from the first apply to the last ParallelJob ``Complete``, including the held
  window (released at ``seconds_to_release``; ``seconds_from_release_to_all_complete`` is the rest).
  ``--arm-limits`` as in bench/amlcompute_scale.py (``raised``, the default, measures amlops, not ARM's throttle).
- ``submit_latency_seconds`` p50/p95/max: from each object's apply (answered by the apiserver, read by this bench;
  its ``creationTimestamp`` has whole seconds only) to its Azure ML job's creation (``creation_context.created_at``
  through ``MLClient``, converted from the emulator's clock at ``--speed`` back to real time).
- ``refresh_window``: Azure ML calls the operator made over ``--window`` poll intervals once every job has been
  submitted, while every job is held (its run() waits for the bench: ``--max-nodes`` run, the others queue), by
  operation (the emulator's ``/stats``), and per interval: the workspace's job listing (shared by every job) against
  per-job GETs. Report reads go to the datastore (Azurite), not counted here: at most one per running job per
  interval (README, ParallelJob on an AmlCompute).
- ``operator_peak_rss_mb``, CPU seconds per process, and the operator's per job (apply to all Complete: submission,
  status, polls).

Run from the repository root as a module (it shares the tests' MLClient helpers in ``tests/support``)::

    uv run python -m bench.paralleljob_azureml [--kind paralleljob|commandjob] [--count 100] [--max-nodes 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from azure.ai.ml import MLClient
from azure.storage.blob import BlobServiceClient
from bench.amlcompute_scale import APPLY_CONCURRENCY, RAISED, REAL_BUCKETS, REPO, _apply_all, arm_answers

import amlops_testbed as testbed
from amlops_emulator.azurite import DEVSTORE_KEY
from amlops_emulator.identity import DEFAULT_PRINCIPAL
from amlops_emulator.seed import DEFAULT_RESOURCE_GROUP, DEFAULT_SUBSCRIPTION, DEFAULT_WORKSPACE
from tests.support.jobs import blobstore
from tests.support.mlclient import operator_env as ml_operator_env
from tests.support.mlclient import process_client

NAMESPACE = "bench"
STORE = "azureml://datastores/workspaceblobstore/paths"
# Returns each file's name; while $HOLD exists run() waits (the bench holds every job until all are submitted, to
# count the refresh cost of many live jobs).
SCRIPT = """\
import os, time


def run(mini_batch):
    while os.path.exists(os.environ["HOLD"]):
        time.sleep(0.05)
    return [os.path.basename(path) for path in mini_batch]
"""
# A CommandJob's command: waits while $HOLD exists, as SCRIPT's run() does.
COMMAND = """\
import os, time

while os.path.exists(os.environ["HOLD"]):
    time.sleep(0.05)
print("released")
"""
IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest"
WORKSPACE = {"subscriptionId": DEFAULT_SUBSCRIPTION, "resourceGroup": DEFAULT_RESOURCE_GROUP, "name": DEFAULT_WORKSPACE}
LIST_OPERATION = "Jobs_List"


def _parallel_job(name: str, prefix: str, hold: Path) -> dict[str, Any]:
    return {
        "apiVersion": "amlops.io/v1alpha1",
        "kind": "ParallelJob",
        "metadata": {"name": name},
        "spec": {
            "compute": {"name": "cpu"},
            "inputs": {"data": {"uri": f"{STORE}/{prefix}/data/", "type": "uri_folder"}},
            "outputs": {"out": {"uri": f"{STORE}/{prefix}/out/{name}/"}},
            "inputData": "${{inputs.data}}",
            "miniBatchSize": "1",
            "environmentVariables": {"HOLD": str(hold)},
            "task": {"codeConfigMap": "code", "entryScript": "score.py", "appendRowTo": "${{outputs.out}}"},
        },
    }


def _command_job(name: str, prefix: str, hold: Path) -> dict[str, Any]:
    return {
        "apiVersion": "amlops.io/v1alpha1",
        "kind": "CommandJob",
        "metadata": {"name": name},
        "spec": {
            "compute": "cpu",
            "codeConfigMap": "code",
            "command": "python hold.py",
            "environment": {"image": IMAGE},
            "environmentVariables": {"HOLD": str(hold)},
        },
    }


@dataclass(frozen=True)
class Kind:
    """A job kind the bench applies: its resource's plural, its document, its Azure ML jobs' name prefix."""

    plural: str
    document: Callable[[str, str, Path], dict[str, Any]]
    azure_prefix: str


KINDS = {
    "paralleljob": Kind("paralleljobs", _parallel_job, "pj-"),
    "commandjob": Kind("commandjobs", _command_job, "cj-"),
}


def _compute(max_nodes: int) -> dict[str, Any]:
    return {
        "apiVersion": "amlops.io/v1alpha1",
        "kind": "AmlCompute",
        "metadata": {"name": "cpu"},
        "spec": {
            "workspace": WORKSPACE,
            "computeName": "bench",
            "vmSize": "STANDARD_DS3_V2",
            "scaleSettings": {"minNodeCount": 0, "maxNodeCount": max_nodes, "nodeIdleTimeBeforeScaleDown": 120},
            "credentials": {"secretRef": {"name": "aml-sp"}},
        },
    }


def _upload_data(run: testbed.EmulatorRun, ml: MLClient, prefix: str) -> None:
    storage = run.endpoints["storage"]
    credential = {"account_name": storage["accountName"], "account_key": DEVSTORE_KEY}
    ca = run.endpoints["caFile"]
    with BlobServiceClient(storage["serviceUrl"], credential=credential, connection_verify=ca) as blobs:
        data = blobs.get_container_client(blobstore(ml))
        for name in ("a.txt", "b.txt"):
            data.upload_blob(f"{prefix}/data/{name}", name.encode(), overwrite=True)


def _objects(bed: testbed.Testbed, plural: str) -> list[dict[str, Any]]:
    _, body = bed.get(f"/apis/amlops.io/v1alpha1/namespaces/{NAMESPACE}/{plural}", timeout=30)
    items: list[dict[str, Any]] = json.loads(body or b"{}").get("items", [])
    return items


def _wait(what: str, condition: Any, within: float, every: float = 1.0) -> None:
    """Wait for ``condition()`` with a deadline, looking every ``every`` seconds (the bench's resolution)."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {within} s")
        time.sleep(every)


def _phases(bed: testbed.Testbed, plural: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for obj in _objects(bed, plural):
        phase = str((obj.get("status") or {}).get("phase") or "unseen")
        counts[phase] = counts.get(phase, 0) + 1
    return counts


async def _apply(bed: testbed.Testbed, plural: str, docs: list[dict[str, Any]]) -> dict[str, float]:
    """Apply every document at once (server-side apply, as bench/amlcompute_scale.py): name → when answered."""
    base = f"{bed.server}/apis/amlops.io/v1alpha1/namespaces/{NAMESPACE}/{plural}"
    answered: dict[str, float] = {}
    connector = aiohttp.TCPConnector(ssl=bed.ssl_context(), limit=APPLY_CONCURRENCY + 1)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(doc: dict[str, Any]) -> None:  # all at once (the connector bounds requests in flight)
            await _apply_all(session, base, [doc])
            answered[doc["metadata"]["name"]] = time.time()

        await asyncio.gather(*(one(doc) for doc in docs))
    return answered


def _by_operation(operations: dict[str, int]) -> dict[str, int]:
    """The emulator's per-path counts of run-history calls folded into one per operation (``/runs/{run}/...``)."""
    folded: dict[str, int] = {}
    for name, count in operations.items():
        key = re.sub(r"/runs/[^/]+", "/runs/{run}", re.sub(r"/subscriptions/.+/workspaces/[^/]+", "", name))
        folded[key] = folded.get(key, 0) + count
    return dict(sorted(folded.items()))


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))], 2)


def _created_real(ml: MLClient, run: testbed.EmulatorRun, prefix: str) -> dict[str, float]:
    """Each job's (named ``prefix``...) creation time in real (wall-clock) seconds: the emulator's clock runs at its
    speed from a known instant, so real = now - (virtual now - created) / speed."""
    clock = run.control("GET", "/clock")
    now_real, now_virtual, speed = time.time(), datetime.fromisoformat(clock["now"]), float(clock["speed"])
    created: dict[str, float] = {}
    for job in ml.jobs.list():
        if not str(job.name).startswith(prefix):
            continue
        at = job.creation_context.created_at
        created[str(job.name)] = now_real - (now_virtual - at).total_seconds() / speed
    return created


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kind", choices=tuple(KINDS), default="paralleljob")
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--max-nodes", type=int, default=8)
    parser.add_argument("--interval", type=float, default=2.0, help="AMLOPS_REQUEUE_SECONDS: a running job's poll")
    parser.add_argument("--window", type=int, default=5, help="poll intervals the refresh cost is counted over")
    parser.add_argument("--timeout", type=float, default=1200.0)
    parser.add_argument("--arm-limits", choices=("real", "raised"), default="raised", help="as amlcompute_scale")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (operator, emulator logs)")
    args = parser.parse_args()
    kind = KINDS[args.kind]
    work = Path(tempfile.mkdtemp(prefix="amlops-bench-"))
    succeeded = False
    bed = testbed.start(testbed.ensure_built(), work / "testbed")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        testbed.install_crds(bed, REPO / "crds")
        bed.kubectl("create", "namespace", NAMESPACE)
        limits: list[str] = []
        for bucket, (size, refill) in REAL_BUCKETS.items():
            raised = args.arm_limits == "raised"
            limits += [f"--{bucket}-bucket", str(RAISED if raised else size)]
            limits += [f"--{bucket}-refill", str(RAISED if raised else refill)]
        emulator = testbed.start_emulator(
            work / "emulator", "--azurite", "--no-batch", *limits, speed=600, timeout=90.0
        )
        procs.append(emulator.proc)
        env = {
            **emulator.operator_env(
                AMLOPS_POLL_FLOOR_SECONDS="1",
                AMLOPS_POLL_CEILING_SECONDS="10",
                AMLOPS_REQUEUE_SECONDS=str(args.interval),
            ),
            **ml_operator_env(emulator.endpoints),
        }
        env.pop("AZUREML_CURRENT_CLOUD", None)  # the bench's MLClient's cloud is not the operator's
        operator = testbed.start_operator(bed, work / "operator.log", "-n", NAMESPACE, env=env, wait=False)
        procs.append(operator.proc)
        bed.kubectl(
            "create", "secret", "generic", "aml-sp", "-n", NAMESPACE,
            f"--from-literal=AZURE_TENANT_ID={DEFAULT_PRINCIPAL.tenant_id}",
            f"--from-literal=AZURE_CLIENT_ID={DEFAULT_PRINCIPAL.client_id}",
            f"--from-literal=AZURE_CLIENT_SECRET={DEFAULT_PRINCIPAL.client_secret}",
        )  # fmt: skip
        code = work / "code"
        code.mkdir()
        (code / "score.py").write_text(SCRIPT)
        (code / "hold.py").write_text(COMMAND)
        bed.kubectl("create", "configmap", "code", "-n", NAMESPACE, f"--from-file={code}")
        operator.wait_live(timeout=120)
        compute = work / "compute.json"
        compute.write_text(json.dumps(_compute(args.max_nodes)))
        bed.kubectl("apply", "-n", NAMESPACE, "-f", str(compute))
        ready = {"type": "Ready", "status": "True"}

        def compute_ready() -> bool:
            return any(
                {k: c.get(k) for k in ready} == ready
                for obj in _objects(bed, "amlcomputes")
                for c in (obj.get("status") or {}).get("conditions") or []
            )

        _wait("the AmlCompute Ready", compute_ready, 180)
        ml = process_client(emulator)
        prefix = f"bench-{os.getpid()}"
        _upload_data(emulator, ml, prefix)
        hold = work / "hold"
        hold.touch()
        docs = [kind.document(f"job{i:04d}", prefix, hold) for i in range(args.count)]
        cpu_of = {"operator": operator.proc.pid, "emulator": emulator.proc.pid}
        cpu_before = {name: testbed.cpu_seconds(pid) for name, pid in cpu_of.items()}

        started = time.monotonic()
        applied = asyncio.run(_apply(bed, kind.plural, docs))
        apply_seconds = time.monotonic() - started

        def all_submitted() -> bool:
            return sum(bool((o.get("status") or {}).get("studioUrl")) for o in _objects(bed, kind.plural)) == len(docs)

        _wait("every job submitted", all_submitted, args.timeout)
        submitted_seconds = time.monotonic() - started
        phases_at_window = _phases(bed, kind.plural)
        emulator.control("DELETE", "/stats")
        window = args.window * args.interval
        time.sleep(window)  # a measurement window, not synchronisation
        refresh = _by_operation(emulator.operations())
        phases_after_window = _phases(bed, kind.plural)
        hold.unlink()
        released = time.monotonic()

        _wait("every job Complete", lambda: _phases(bed, kind.plural).get("Complete", 0) == len(docs), args.timeout)
        wall = time.monotonic() - started
        after_release = time.monotonic() - released
        answers = arm_answers(emulator.control("GET", "/stats"))
        cpu = {name: round(testbed.cpu_seconds(pid) - cpu_before[name], 1) for name, pid in cpu_of.items()}
        uids = {o["metadata"]["name"]: o["metadata"]["uid"] for o in _objects(bed, kind.plural)}
        created = _created_real(ml, emulator, kind.azure_prefix)
        azure_name = {name: f"{kind.azure_prefix}{uids[name]}" for name in applied}
        latency = [created[azure_name[name]] - at for name, at in applied.items() if azure_name[name] in created]
        intervals = args.window
        gets = {k: v for k, v in refresh.items() if k != LIST_OPERATION}
        result = {
            "bench": "paralleljob_azureml",
            "kind": args.kind,
            "count": args.count,
            "max_nodes": args.max_nodes,
            "emulator_speed": 600,
            "poll_interval_seconds": args.interval,
            "apply_seconds": round(apply_seconds, 2),
            "seconds_to_all_submitted": round(submitted_seconds, 2),
            "wall_seconds_to_all_complete": round(wall, 2),
            "seconds_to_release": round(wall - after_release, 2),
            "seconds_from_release_to_all_complete": round(after_release, 2),
            "arm_limits": args.arm_limits,
            "emulator_requests_after_window": answers,
            "submit_latency_seconds": {
                "p50": _percentile(latency, 0.5),
                "p95": _percentile(latency, 0.95),
                "max": round(max(latency), 2),
                "mean": round(statistics.fmean(latency), 2),
                "jobs": len(latency),
            },
            "azure_ml_jobs": len(created),
            "refresh_window": {
                "seconds": window,
                "phases_at_start": phases_at_window,
                "phases_at_end": phases_after_window,
                "calls_by_operation": refresh,
                "job_list_calls_per_interval": round(refresh.get(LIST_OPERATION, 0) / intervals, 2),
                "other_calls_per_interval": round(sum(gets.values()) / intervals, 2),
            },
            "operator_peak_rss_mb": testbed.peak_rss_mb(operator.proc.pid),
            "cpu_seconds": cpu,
            "operator_cpu_seconds_per_job": round(cpu["operator"] / args.count, 3),
            "cores": os.cpu_count(),
            "load_average_1m": round(os.getloadavg()[0], 2),
        }
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
