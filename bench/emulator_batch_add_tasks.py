"""Tasks added per second through azure-batch ``create_tasks`` against the Batch emulator (target ≥ 5,000/s).

The job's pool has no nodes, so the measurement is the data plane alone (request parsing, shared-key
verification, task bookkeeping), not the node agent. Prints one JSON object.

    uv run python bench/emulator_batch_add_tasks.py [--tasks 20000] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import tempfile
import time
from pathlib import Path

from aiohttp import web
from azure.batch import models
from azure.batch.aio import BatchClient
from azure.core.credentials import AzureNamedKeyCredential

from amlops_emulator.batch import BatchEmulatorSettings, build_batch_app
from amlops_emulator.clock import VirtualClock
from amlops_emulator.seed import DEFAULT_BATCH_ACCOUNT, DEFAULT_BATCH_KEY, Seed


async def add_tasks_seconds(client: BatchClient, job_id: str, count: int, concurrency: int) -> tuple[int, float]:
    """Add ``count`` of the smallest tasks to the job through ``create_tasks``: (tasks added, seconds taken)."""
    tasks = [models.BatchTaskCreateOptions(id=f"task-{i:06d}", command_line="/bin/true") for i in range(count)]
    started = time.perf_counter()
    result = await client.create_tasks(job_id, tasks, max_concurrency=concurrency)
    return len(result.result_values or []), time.perf_counter() - started


async def measure(task_count: int, concurrency: int, state_dir: Path) -> dict[str, object]:
    app = build_batch_app(BatchEmulatorSettings(state_dir=state_dir), VirtualClock(), Seed.default())
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    endpoint = f"http://127.0.0.1:{sock.getsockname()[1]}/{DEFAULT_BATCH_ACCOUNT}"
    try:
        credential = AzureNamedKeyCredential(DEFAULT_BATCH_ACCOUNT, DEFAULT_BATCH_KEY)
        async with BatchClient(endpoint, credential) as client:
            await client.create_pool(models.BatchPoolCreateOptions(id="bench", vm_size="standard_d2s_v3"))
            await client.create_job(
                models.BatchJobCreateOptions(id="bench", pool_info=models.BatchPoolInfo(pool_id="bench"))
            )
            added, elapsed = await add_tasks_seconds(client, "bench", task_count, concurrency)
    finally:
        await runner.cleanup()
    return {
        "benchmark": "emulator_batch_add_tasks",
        "tasks": added,
        "requests": -(-added // 100),
        "concurrency": concurrency,
        "seconds": round(elapsed, 3),
        "tasksPerSecond": round(added / elapsed, 1),
        "target": 5000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="amlops-bench-") as state_dir:
        print(json.dumps(asyncio.run(measure(args.tasks, args.concurrency, Path(state_dir)))))


if __name__ == "__main__":
    main()
