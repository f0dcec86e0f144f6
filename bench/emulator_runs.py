"""N command runs submitted at once on one AmlCompute of the emulator → all Completed (``ml/execution.py``).

In-process, through the executor's API (the jobs REST routes that will front it come later): a cluster of up to
``--max-nodes`` nodes, ``--runs`` one-process runs of ``--command``. The virtual clock runs at ``--speed``, so
node allocation and preparation take (30 + 60) / speed real seconds; the processes run in real time. Prints one
JSON object: wall time from submission to the last Completed, runs per status, the emulator's CPU seconds (and
its user processes'), peak RSS. No target: a measurement.

    uv run python bench/emulator_runs.py [--runs 50] [--max-nodes 10] [--speed 600]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import tempfile
import time
from collections import Counter
from pathlib import Path

from amlops_emulator.ml.execution import RunRequest
from amlops_emulator.seed import DEFAULT_RESOURCE_GROUP, DEFAULT_SUBSCRIPTION, DEFAULT_WORKSPACE
from amlops_emulator.server import EmulatorConfig, run_emulator

DEADLINE_SECONDS = 600.0


def _cluster_body(max_nodes: int) -> dict[str, object]:
    scale = {"maxNodeCount": max_nodes, "minNodeCount": 0, "nodeIdleTimeBeforeScaleDown": "PT2M"}
    return {
        "location": "westeurope",
        "properties": {"computeType": "AmlCompute", "properties": {"vmSize": "Standard_D2_v2", "scaleSettings": scale}},
    }


async def measure(runs: int, max_nodes: int, speed: float, command: str, state_dir: Path) -> dict[str, object]:
    config = EmulatorConfig(state_dir=state_dir, serve_batch=False, speed=speed)
    async with run_emulator(config) as running:
        state = running.state
        ws = state.arm.workspace(DEFAULT_SUBSCRIPTION, DEFAULT_RESOURCE_GROUP, DEFAULT_WORKSPACE)
        record, _ = state.arm.put(ws, "bench", _cluster_body(max_nodes), None)
        state.clock.advance(state.arm.settings.timings.create)  # provisioned: the bench measures the runs
        cpu_before = time.process_time()
        started = time.perf_counter()
        submitted = [state.runs.submit(RunRequest(f"bench-{i:04d}", record.arm_id, command)) for i in range(runs)]
        deadline = started + DEADLINE_SECONDS
        while not all(run.done for run in submitted):
            if time.perf_counter() > deadline:
                break  # reported in "statuses"
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_before
        peak_nodes = max_nodes if record.cluster is None else record.cluster.target_node_count()
    return {
        "benchmark": "emulator_runs",
        "runs": runs,
        "maxNodes": max_nodes,
        "speed": speed,
        "statuses": dict(Counter(str(run.status) for run in submitted)),
        "seconds": round(elapsed, 3),
        "emulatorCpuSeconds": round(cpu, 3),
        "userProcessesCpuSeconds": round(_children_cpu(), 3),
        "peakRssMb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "nodesAtEnd": peak_nodes,
    }


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--max-nodes", type=int, default=10)
    parser.add_argument("--speed", type=float, default=600.0)
    parser.add_argument("--command", default="echo hello > outputs/hello.txt")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="amlops-bench-") as state_dir:
        result = asyncio.run(measure(args.runs, args.max_nodes, args.speed, args.command, Path(state_dir)))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
