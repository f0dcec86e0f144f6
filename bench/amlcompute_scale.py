"""Bench: N AmlComputes in one workspace applied at once → all Ready. Prints one JSON object.

Real parts only: the Kubernetes test bed, the ARM emulator (its write buckets raised so the bench measures
amlops, not the default ARM throttle), and the operator as a process. Reports wall time to all Ready, ARM
calls by operation, apiserver requests, the operator's peak RSS, and ARM reads in one steady poll interval.

    uv run python bench/amlcompute_scale.py --count 1000
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from amlops import testbed

REPO = Path(__file__).resolve().parents[1]
WORKSPACE = {
    "subscriptionId": "00000000-0000-0000-0000-000000000001",
    "resourceGroup": "rg-amlops",
    "name": "ws-amlops",
}


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _apiserver_requests(bed: testbed.Testbed) -> int:
    _, body = bed.get("/metrics")
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith("apiserver_request_total{") and 'resource="amlcomputes"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def _control(endpoints: dict[str, Any], method: str, path: str) -> Any:
    import urllib.request

    req = urllib.request.Request(endpoints["controlUrl"] + path, method=method)
    import ssl

    ctx = ssl.create_default_context(cafile=endpoints["caFile"])
    with urllib.request.urlopen(req, context=ctx, timeout=30) as r:
        text = r.read()
        return json.loads(text) if text else None


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--poll-interval", type=float, default=10.0, help="steady poll interval (ceiling)")
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="amlops-bench-"))
    bed = testbed.start(testbed.ensure_built(), work / "testbed")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        testbed.install_crds(bed, REPO / "crds")
        bed.kubectl("create", "namespace", "bench")
        buckets = [f"--{kind}-{what}" for kind in ("reads", "writes", "deletes") for what in ("bucket", "refill")]
        extra = [arg for flag in buckets for arg in (flag, "100000")]
        emulator = testbed.start_emulator(work / "emulator", "--no-batch", *extra, speed=600)
        procs.append(emulator.proc)
        endpoints = emulator.endpoints
        env = {
            **bed.env(),
            **emulator.operator_env(
                AMLOPS_POLL_FLOOR_SECONDS="1",
                AMLOPS_POLL_CEILING_SECONDS=str(args.poll_interval),
                AMLOPS_REQUEUE_SECONDS="2",
            ),
        }
        op_log = (work / "operator.log").open("wb")
        operator = subprocess.Popen(
            [sys.executable, "-m", "amlops", "run", "-n", "bench", "--liveness", "off", "--metrics-port", "0"],
            env=env,
            stdout=op_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        procs.append(operator)
        docs = [
            {
                "apiVersion": "amlops.io/v1alpha1",
                "kind": "AmlCompute",
                "metadata": {"name": f"c{i:05d}"},
                "spec": {"workspace": WORKSPACE, "vmSize": "STANDARD_D1_V2", "scaleSettings": {"maxNodeCount": 1}},
            }
            for i in range(args.count)
        ]
        manifest = work / "computes.yaml"
        manifest.write_text(yaml.safe_dump_all(docs))
        api_before = _apiserver_requests(bed)
        started = time.monotonic()
        bed.kubectl("apply", "--server-side", "-n", "bench", "-f", str(manifest), timeout=args.timeout)
        applied = time.monotonic() - started

        def ready_count() -> int:
            out = bed.kubectl(
                "get",
                "amlcomputes",
                "-n",
                "bench",
                "-o",
                'jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\\n"}{end}',
            )
            return sum(1 for line in out.splitlines() if line.strip() == "True")

        testbed.eventually(
            lambda: ready_count() == args.count or None, timeout=args.timeout, interval=1.0, what="all Ready"
        )
        wall = time.monotonic() - started
        stats = _control(endpoints, "GET", "/stats")
        calls = {name: op["count"] for name, op in stats["operations"].items()}
        api_requests = _apiserver_requests(bed) - api_before
        # Steady state: ARM reads over two poll intervals once everything is Ready. One list *call* pages
        # through the workspace (the emulator's page size is 50), so pages / pages-per-call = list calls.
        _control(endpoints, "DELETE", "/stats")
        window = 2 * args.poll_interval
        time.sleep(window)  # a measurement window, not synchronisation
        steady = {name: op["count"] for name, op in _control(endpoints, "GET", "/stats")["operations"].items()}
        pages_per_call = -(-args.count // 50)
        list_calls = steady.get("MachineLearningCompute_ListByWorkspace", 0) / pages_per_call
        result = {
            "bench": "amlcompute_scale",
            "count": args.count,
            "apply_seconds": round(applied, 2),
            "wall_seconds_to_all_ready": round(wall, 2),
            "arm_calls_by_operation": calls,
            "apiserver_requests_amlcomputes": api_requests,
            "operator_peak_rss_mb": round(_peak_rss_mb(operator.pid), 1),
            "steady_window_seconds": window,
            "steady_arm_calls_by_operation": steady,
            "steady_list_calls_per_workspace_per_interval": round(list_calls * args.poll_interval / window, 2),
            "targets": {"wall_seconds": 30, "steady_list_calls_per_workspace_per_interval": 1, "rss_mb": 300},
        }
        print(json.dumps(result))
        return 0
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        bed.stop()


if __name__ == "__main__":
    raise SystemExit(main())
