"""Plan 100,000 mini-batches and submit one Batch task each to the Batch emulator (no-op tasks).

Planning is the real streaming planner over a generated listing; submission goes through azure-batch
``create_tasks`` in slices fed as the plan streams, so neither the listing nor the task list is ever held
whole. The pool has one node with many slots, and each task's command is ``true``. Prints one JSON object:
wall time for planning + submission, tasks/s, the time until every task completed, and peak RSS.

    uv run python bench/paralleljob_plan_submit.py [--mini-batches 100000] [--files-per-mini-batch 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from aiohttp import web
from azure.batch import models
from azure.batch.aio import BatchClient
from azure.core.credentials import AzureNamedKeyCredential

from amlops.emulator.batch import BatchEmulatorSettings, build_batch_app
from amlops.emulator.batch.pools import NODE_START_SECONDS, RESIZE_SECONDS
from amlops.emulator.clock import VirtualClock
from amlops.emulator.seed import DEFAULT_BATCH_ACCOUNT, DEFAULT_BATCH_KEY, Seed
from amlops.external.paralleljob_plan import InputItem, PlanSpec, plan

COMPLETE_WITHIN = 1800.0
SUBMIT_SLICE = 1_000  # tasks per create_tasks call (the SDK splits it into 100-task requests)


def listing(count: int) -> Iterator[InputItem]:
    for i in range(count):
        yield InputItem(f"inputs/shard-{i:08d}.bin", 4096, f"0x8D{i:012X}")


async def measure(mini_batches: int, per_batch: int, concurrency: int, state_dir: Path) -> dict[str, object]:
    clock = VirtualClock()
    app = build_batch_app(BatchEmulatorSettings(state_dir=state_dir), clock, Seed.default())
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    endpoint = f"http://127.0.0.1:{sock.getsockname()[1]}/{DEFAULT_BATCH_ACCOUNT}"
    try:
        async with BatchClient(endpoint, AzureNamedKeyCredential(DEFAULT_BATCH_ACCOUNT, DEFAULT_BATCH_KEY)) as client:
            await client.create_pool(
                models.BatchPoolCreateOptions(
                    id="bench", vm_size="standard_d2s_v3", target_dedicated_nodes=1, task_slots_per_node=32
                )
            )
            clock.advance(RESIZE_SECONDS + NODE_START_SECONDS + 1)
            await client.create_job(
                models.BatchJobCreateOptions(id="bench", pool_info=models.BatchPoolInfo(pool_id="bench"))
            )
            started = time.perf_counter()
            submitted = 0
            pending: list[models.BatchTaskCreateOptions] = []
            async for batch in plan(listing(mini_batches * per_batch), PlanSpec("files", str(per_batch))):
                pending.append(models.BatchTaskCreateOptions(id=f"mb-{batch.index}", command_line="true"))
                if len(pending) == SUBMIT_SLICE:
                    submitted += await submit(client, pending, concurrency)
                    pending = []
            submitted += await submit(client, pending, concurrency)
            submit_seconds = time.perf_counter() - started
            await client.update_job(
                "bench",
                models.BatchJobUpdateOptions(all_tasks_complete_mode=models.BatchAllTasksCompleteMode.TERMINATE_JOB),
            )
            await wait_completed(client, deadline=time.monotonic() + COMPLETE_WITHIN)
            completed_seconds = time.perf_counter() - started
            counts = (await client.get_job_task_counts("bench")).task_counts
    finally:
        await runner.cleanup()
    return {
        "benchmark": "paralleljob_plan_submit",
        "miniBatches": submitted,
        "inputFiles": mini_batches * per_batch,
        "planAndSubmitSeconds": round(submit_seconds, 3),
        "tasksPerSecond": round(submitted / submit_seconds, 1),
        "allCompletedSeconds": round(completed_seconds, 3),
        "succeeded": counts.succeeded,
        "failed": counts.failed,
        "peakRssMiB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


async def wait_completed(client: BatchClient, deadline: float) -> None:
    """Poll the job (the service offers no watch) until every task ran, or give up at the deadline."""
    while True:
        if (await client.get_job("bench")).state == models.BatchJobState.COMPLETED:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the tasks did not complete within {COMPLETE_WITHIN} s")
        await asyncio.sleep(0.5)


async def submit(client: BatchClient, tasks: list[models.BatchTaskCreateOptions], concurrency: int) -> int:
    if not tasks:
        return 0
    result = await client.create_tasks("bench", tasks, max_concurrency=concurrency)
    failed = [r for r in result.result_values or [] if r.status != models.BatchTaskAddStatus.SUCCESS]
    if failed:
        raise RuntimeError(f"{len(failed)} task(s) were not added: {failed[0]}")
    return len(tasks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mini-batches", type=int, default=100_000)
    parser.add_argument("--files-per-mini-batch", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="amlops-bench-") as state_dir:
        result = asyncio.run(measure(args.mini_batches, args.files_per_mini_batch, args.concurrency, Path(state_dir)))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
