"""N command jobs submitted at once through azure-ai-ml's real ``MLClient`` on one emulator AmlCompute → all
Completed.

The emulator runs as its own process with Azurite (``amlops emulator --azurite``), its clock at ``--speed`` so
node allocation and preparation take (30 + 60) / speed real seconds; a cluster of up to ``--max-nodes`` nodes.
Each job has a small data input (a data asset registered once) and a named output, so the bench goes through
input fetching, code-free submission, the executor, output upload and the clean-up of each run's copies. Jobs are
submitted by ``--submitters`` threads sharing one client. Prints one JSON object: submission time (first PUT to
the last answered), wall time (first PUT to the last job Completed), jobs per status, the emulator process's CPU
seconds and peak RSS (``/proc``, Azurite and the user processes excluded), files the emulator still keeps of
ended runs' code and inputs (0 expected). No target: a measurement.

Run from the repository root as a module (it shares the tests' MLClient helpers in ``tests/support``)::

    uv run python -m bench.emulator_jobs [--jobs 50] [--max-nodes 10] [--speed 600]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from azure.ai.ml import Input, Output, command
from azure.ai.ml.entities import AmlCompute, Data

import amlops_testbed as testbed
from tests.support.jobs import ENVIRONMENT, TERMINAL
from tests.support.mlclient import process_client

DEADLINE_SECONDS = 900.0
COMMAND = "cat ${{inputs.rows}}/part-0.csv > ${{outputs.out}}/copy.csv"


def _process_usage(pid: int) -> tuple[float, float]:
    """(CPU seconds, peak RSS in MB) of a live process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    peak = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            peak = int(line.split()[1]) / 1024
    return cpu, peak


def _leftovers(state_dir: Path) -> int:
    aml = state_dir / "aml"
    return sum(1 for root in ("inputs", "code") if (aml / root).is_dir() for _ in (aml / root).rglob("*"))


def measure(jobs: int, max_nodes: int, speed: float, submitters: int, state_dir: Path) -> dict[str, Any]:
    run = testbed.start_emulator(state_dir / "state", "--azurite", "--no-batch", speed=speed, timeout=90.0)
    try:
        ml = process_client(run, polling_interval=0.2)
        ml.compute.begin_create_or_update(
            AmlCompute(name="bench", size="Standard_D2_v2", min_instances=0, max_instances=max_nodes)
        ).result()
        rows = state_dir / "rows"
        rows.mkdir()
        (rows / "part-0.csv").write_text("id\n1\n")
        ml.data.create_or_update(Data(name="bench-rows", version="1", path=str(rows), type="uri_folder"))
        names = [f"bench-{i:04d}" for i in range(jobs)]

        def submit(name: str) -> None:
            ml.jobs.create_or_update(
                command(
                    name=name,
                    command=COMMAND,
                    inputs={"rows": Input(type="uri_folder", path="azureml:bench-rows:1")},
                    outputs={"out": Output(type="uri_folder")},
                    environment=ENVIRONMENT,
                    compute="bench",
                )
            )

        cpu_before, _ = _process_usage(run.proc.pid)
        started = time.perf_counter()
        with ThreadPoolExecutor(submitters) as pool:
            list(pool.map(submit, names))
        submitted = time.perf_counter() - started
        statuses: dict[str, str] = {}
        deadline = started + DEADLINE_SECONDS
        while time.perf_counter() < deadline:
            # JobStatus is a str enum: its value, not its str(), is Azure's status name.
            statuses = {job.name: str(getattr(job.status, "value", job.status)) for job in ml.jobs.list()}
            statuses = {name: status for name, status in statuses.items() if name in names}
            if len(statuses) == jobs and all(s in TERMINAL for s in statuses.values()):
                break
            time.sleep(0.5)  # a poll with a deadline; the result reports what did not finish
        elapsed = time.perf_counter() - started
        cpu_after, peak_mb = _process_usage(run.proc.pid)
        leftovers = _leftovers(run.state_dir)
    finally:
        run.stop()
    return {
        "benchmark": "emulator_jobs",
        "jobs": jobs,
        "maxNodes": max_nodes,
        "speed": speed,
        "submitters": submitters,
        "statuses": dict(Counter(statuses.values())),
        "submissionSeconds": round(submitted, 3),
        "seconds": round(elapsed, 3),
        "emulatorCpuSeconds": round(cpu_after - cpu_before, 3),
        "emulatorPeakRssMb": round(peak_mb, 1),
        "leftoverInputAndCodeFiles": leftovers,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--max-nodes", type=int, default=10)
    parser.add_argument("--speed", type=float, default=600.0)
    parser.add_argument("--submitters", type=int, default=8, help="threads submitting jobs at once")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="amlops-bench-") as work:
        result = measure(args.jobs, args.max_nodes, args.speed, args.submitters, Path(work))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
