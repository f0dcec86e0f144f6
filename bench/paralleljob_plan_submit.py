"""Bench: one ParallelJob of 100,000 mini-batches, planned and submitted by the operator. Prints one JSON object.

Real parts only: the Kubernetes test bed, Azurite (inputs and the plan), the emulator as its own process (ARM
and Batch), and the operator as a process. The BatchCompute's pool has no nodes, so every task stays queued:
nothing runs, and the figures are the operator's alone (plan and add every task). Measured from the apply:
``planSeconds`` (the plan's index is done), ``planAndSubmitSeconds`` (the Batch job counts every task), tasks/s,
the operator's peak RSS and CPU seconds, and the Batch calls it made. Uploading the inputs is set-up, not measured.
On a given pool (``compute.poolId``, as here) with no completed job to reuse, the operator creates the Batch job
once the plan's first chunk is written and adds tasks while it plans the rest: ``planSeconds`` is then when the plan
was done, with tasks already being added.

The emulator's add-task ceiling is measured in the same run, once the operator has stopped: as many of the
smallest tasks, added through ``create_tasks`` into a job of their own over the same https endpoint and with the
operator's concurrency (``bench/emulator_batch_add_tasks.py``'s measurement). ``overCeiling`` is plan + submit
time over that ceiling's time (target ≤ 1.2: planning and the operator's own task bodies cost at most a fifth more
than adding tasks alone), so the figure holds on a loaded machine as well as on an idle one.

``--input files`` (default) plans one file per mini-batch from a folder listing; ``--input tabular`` plans one
CSV row per mini-batch (``miniBatchSize`` of one row's bytes). Azurite lists a folder of 100,000 blobs far
more slowly than Blob storage does (minutes; one page of 5,000 in about 100 ms on Azure), so ``planSeconds``
of the files input measures mostly Azurite; the tabular input shows the operator's own planning cost.

Run from the repository root as a module (it shares the ceiling's measurement with the emulator's bench)::

    uv run python -m bench.paralleljob_plan_submit [--mini-batches 100000] [--input files|tabular]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from azure.batch import models
from azure.batch.aio import BatchClient
from azure.core.credentials import AzureNamedKeyCredential
from bench.emulator_batch_add_tasks import add_tasks_seconds

import amlops_testbed as testbed
from amlops.azure.batch_jobs import ADD_CONCURRENCY
from amlops.azure.blob import BlobFolder, BlobStore
from amlops_emulator.azurite import azurite_blob
from amlops_emulator.seed import DEFAULT_BATCH_ACCOUNT, DEFAULT_BATCH_KEY

REPO = Path(__file__).resolve().parents[1]
NAMESPACE = "bench"
CONTAINER = "bench"  # the namespace's own container: the operator's shared account allows no other
UPLOAD_CONCURRENCY = 64
WORKSPACE = {"subscriptionId": "00000000-0000-0000-0000-000000000001", "resourceGroup": "rg-amlops",
             "name": "ws-amlops"}  # fmt: skip


ROW_BYTES = len(b"r0000000,1\n")


async def upload_inputs(connection_string: str, count: int, tabular: bool) -> None:
    async with BlobStore.from_connection_string(connection_string) as store:
        await store.create_container(CONTAINER)
        await store.write(BlobFolder(CONTAINER, "code/"), "score.py", b"def run(mini_batch):\n    return mini_batch\n")
        gate = asyncio.Semaphore(UPLOAD_CONCURRENCY)
        inputs = BlobFolder(CONTAINER, "inputs/")
        if tabular:
            rows = b"".join(f"r{i:07d},1\n".encode() for i in range(count))
            await store.write(inputs, "rows.csv", b"id,x\n" + rows)
            return

        async def one(i: int) -> None:
            async with gate:
                await store.write(inputs, f"f{i:07d}.txt", b"x")

        await asyncio.gather(*(one(i) for i in range(count)))


def compute_manifest() -> str:
    compute = {
        "apiVersion": "amlops.io/v1alpha1",
        "kind": "BatchCompute",
        "metadata": {"name": "batch"},
        "spec": {
            "workspace": WORKSPACE,
            "batchAccount": {"resourceGroup": "rg-amlops", "accountName": DEFAULT_BATCH_ACCOUNT},
            "batchCredentials": {"sharedKeySecretRef": {"name": "batch-key"}},
            "pools": [{"id": "queue", "vmSize": "STANDARD_D2S_V3", "targetDedicatedNodes": 0}],
        },
    }
    return yaml.safe_dump(compute)


def job_manifest(blob_endpoint: str, per_batch: int, tabular: bool) -> str:
    job = {
        "apiVersion": "amlops.io/v1alpha1",
        "kind": "ParallelJob",
        "metadata": {"name": "big"},
        "spec": {
            "compute": {"name": "batch", "poolId": "queue"},
            "inputs": {
                "data": {"uri": f"{blob_endpoint}/{CONTAINER}/inputs", "type": "mltable" if tabular else "uri_folder"}
            },
            "outputs": {"scores": {"uri": f"{blob_endpoint}/{CONTAINER}/out"}},
            "inputData": "${{inputs.data}}",
            "miniBatchSize": str(ROW_BYTES * per_batch if tabular else per_batch),
            "task": {
                "code": f"{blob_endpoint}/{CONTAINER}/code",
                "entryScript": "score.py",
                "appendRowTo": "${{outputs.scores}}",
            },
        },
    }
    return yaml.safe_dump(job)


async def task_count(batch_url: str, job_id: str) -> int:
    credential = AzureNamedKeyCredential(DEFAULT_BATCH_ACCOUNT, DEFAULT_BATCH_KEY)
    async with BatchClient(f"{batch_url}/{DEFAULT_BATCH_ACCOUNT}", credential) as client:
        try:
            counts = (await client.get_job_task_counts(job_id)).task_counts
        except Exception:  # the job does not exist yet
            return 0
        return counts.active + counts.running + counts.completed


async def add_task_ceiling(emulator: testbed.EmulatorRun, pool_id: str, count: int) -> tuple[int, float]:
    """The emulator's add-task ceiling now: ``count`` of the smallest tasks into a job of their own, over the https
    endpoint the operator uses, with its concurrency: (tasks added, seconds)."""
    credential = AzureNamedKeyCredential(DEFAULT_BATCH_ACCOUNT, DEFAULT_BATCH_KEY)
    endpoint = f"{emulator.endpoints['batchTlsUrl']}/{DEFAULT_BATCH_ACCOUNT}"
    async with BatchClient(endpoint, credential, connection_verify=emulator.endpoints["caFile"]) as client:
        pool = models.BatchPoolInfo(pool_id=pool_id)
        await client.create_job(models.BatchJobCreateOptions(id="ceiling", pool_info=pool))
        return await add_tasks_seconds(client, "ceiling", count, ADD_CONCURRENCY)


async def plan_done(connection_string: str, uid: str) -> bool:
    async with BlobStore.from_connection_string(connection_string) as store:
        data = await store.read(BlobFolder(CONTAINER, f"out/_amlops/pj-{uid}/plan/"), "index.json")
    return data is not None and bool(json.loads(data).get("done"))


def measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    total = args.mini_batches
    bed = testbed.start(testbed.ensure_built(), work / "testbed")
    operator: testbed.OperatorRun | None = None
    emulator: testbed.EmulatorRun | None = None
    try:
        with azurite_blob(work / "azurite", in_memory=True) as azurite:
            testbed.install_crds(bed, REPO / "crds")
            emulator = testbed.start_emulator(work / "emulator", speed=60)
            began = time.monotonic()
            tabular = args.input == "tabular"
            asyncio.run(upload_inputs(azurite.connection_string, total * args.files_per_mini_batch, tabular))
            upload_seconds = time.monotonic() - began
            bed.kubectl("create", "namespace", NAMESPACE)
            bed.kubectl(
                "create", "secret", "generic", "batch-key", "-n", NAMESPACE, f"--from-literal=key={DEFAULT_BATCH_KEY}"
            )
            env = {**emulator.operator_env(AMLOPS_POLL_FLOOR_SECONDS="1", AMLOPS_REQUEUE_SECONDS="1"),
                   "AMLOPS_BLOB_CONNECTION_STRING": azurite.connection_string,
                   "AMLOPS_SHARED_STORAGE_NAMESPACES": NAMESPACE}  # fmt: skip
            operator = testbed.start_operator(bed, work / "operator.log", "-n", NAMESPACE, env=env, wait=False)
            # The compute first: the bench measures the job, not the attach.
            bed.kubectl("apply", "-n", NAMESPACE, "-f", "-", input_text=compute_manifest())
            bed.kubectl("wait", "-n", NAMESPACE, "--for=condition=Ready", "batchcompute/batch", "--timeout=120s")
            job = job_manifest(azurite.blob_endpoint, args.files_per_mini_batch, tabular)
            bed.kubectl("apply", "-n", NAMESPACE, "-f", "-", input_text=job)
            applied = time.monotonic()
            emulator_cpu_before = testbed.cpu_seconds(emulator.proc.pid)
            uid = json.loads(bed.kubectl("get", "paralleljob", "big", "-n", NAMESPACE, "-o", "json"))["metadata"]["uid"]
            planned: float | None = None
            submitted: float | None = None
            batch_url = emulator.endpoints["batchUrl"]
            while time.monotonic() - applied < args.timeout:
                if operator.proc.poll() is not None:
                    raise RuntimeError(f"the operator exited ({operator.proc.returncode}); see {work / 'operator.log'}")
                if planned is None and asyncio.run(plan_done(azurite.connection_string, uid)):
                    planned = time.monotonic() - applied
                if asyncio.run(task_count(batch_url, f"pj-{uid}")) >= total:
                    submitted = time.monotonic() - applied
                    break
                time.sleep(0.5)
            if submitted is None:
                raise TimeoutError(f"not every task was added within {args.timeout} s; see {work / 'operator.log'}")
            rss = testbed.peak_rss_mb(operator.proc.pid)
            cpu = testbed.cpu_seconds(operator.proc.pid)
            emulator_cpu = testbed.cpu_seconds(emulator.proc.pid) - emulator_cpu_before
            status = json.loads(bed.kubectl("get", "paralleljob", "big", "-n", NAMESPACE, "-o", "json")).get(
                "status", {}
            )
            stats = emulator.operations()
            # The ceiling with the operator gone, so that it has the machine as the operator had it.
            operator.stop(grace=10)
            emulator_cpu_before = testbed.cpu_seconds(emulator.proc.pid)
            ceiling_tasks, ceiling = asyncio.run(add_task_ceiling(emulator, "queue", total))
            ceiling_emulator_cpu = testbed.cpu_seconds(emulator.proc.pid) - emulator_cpu_before
    finally:
        if operator is not None:
            operator.stop(grace=10)
        if emulator is not None:
            emulator.stop()
        bed.stop()
    return {
        "benchmark": "paralleljob_plan_submit",
        "operatorAllocator": testbed.allocator_name(),
        "miniBatches": total,
        "input": args.input,
        "inputItems": total * args.files_per_mini_batch,
        "inputUploadSeconds": round(upload_seconds, 1),
        "planSeconds": round(planned or submitted, 1),
        "planAndSubmitSeconds": round(submitted, 1),
        "tasksPerSecond": round(total / submitted, 1),
        "ceilingTasks": ceiling_tasks,
        "ceilingSeconds": round(ceiling, 1),
        "ceilingTasksPerSecond": round(ceiling_tasks / ceiling, 1),
        "overCeiling": round(submitted / ceiling, 2),
        # The emulator's CPU for the operator's tasks and for the ceiling's: what the bodies cost the service.
        "emulatorCpuSeconds": round(emulator_cpu, 1),
        "ceilingEmulatorCpuSeconds": round(ceiling_emulator_cpu, 1),
        "operatorPeakRssMiB": rss,
        "operatorCpuSeconds": cpu,
        "statusMiniBatches": status.get("miniBatches"),
        "batchCalls": stats,
        "targets": {"overCeiling": 1.2, "operatorPeakRssMiB": 100},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mini-batches", type=int, default=100_000)
    parser.add_argument("--files-per-mini-batch", type=int, default=1, help="files (or rows) per mini-batch")
    parser.add_argument("--input", choices=["files", "tabular"], default="files")
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="amlops-bench-") as work:
        print(json.dumps(measure(args, Path(work))))


if __name__ == "__main__":
    main()
