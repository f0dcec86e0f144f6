"""``amlops demo``: the whole stack on this machine, one command.

Starts the real Kubernetes test bed and the Azure emulator, installs the CRDs, starts the operator against
both, applies ``samples/``, shows the resources converging, prints the final ``kubectl get amlops`` table and
how to reach the cluster, then keeps running until Ctrl-C (or exits at once with ``--exit``, which the test
of this command uses).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from amlops import testbed

SAMPLES = testbed.REPO_ROOT / "samples"
CRDS = testbed.REPO_ROOT / "crds"


def _observed(bed: testbed.Testbed, namespace: str) -> tuple[int, int]:
    """(resources whose current generation the operator has written status for, all resources)."""
    items = json.loads(bed.kubectl("get", "amlops", "-n", namespace, "-o", "json"))["items"]
    done = sum(1 for i in items if (i.get("status") or {}).get("observedGeneration") == i["metadata"]["generation"])
    return done, len(items)


def _start_emulator(work: Path) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    state = work / "emulator"
    log = (work / "emulator.log").open("wb")
    args = [sys.executable, "-m", "amlops", "emulator", "--arm-port", "0", "--batch-port", "0"]
    args += ["--state-dir", str(state), "--speed", "30"]
    proc = subprocess.Popen(
        args,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    endpoints = testbed.eventually(
        lambda: json.loads((state / "endpoints.json").read_text()) if (state / "endpoints.json").exists() else None,
        timeout=30,
        what="the emulator",
    )
    env = {
        "AMLOPS_ARM_ENDPOINT": endpoints["armUrl"],
        "AMLOPS_CA_BUNDLE": endpoints["caFile"],
        "AMLOPS_STATIC_TOKEN": endpoints["token"],
        "AMLOPS_POLL_FLOOR_SECONDS": "1",
        "AMLOPS_REQUEUE_SECONDS": "2",
    }
    return proc, env


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def run(*, exit_when_done: bool, timeout: float, workdir: Path | None = None) -> int:
    work = workdir or Path(tempfile.mkdtemp(prefix="amlops-demo-"))
    print(f"==> building or reusing the Kubernetes test bed (cache: {testbed.cache_dir()})", flush=True)
    bin_dir = testbed.ensure_built()
    bed = testbed.start(bin_dir, work / "testbed")
    operator: subprocess.Popen[bytes] | None = None
    emulator: subprocess.Popen[bytes] | None = None
    try:
        print(f"==> kube-apiserver ready at {bed.server}", flush=True)
        testbed.install_crds(bed, CRDS)
        print("==> CRDs installed and Established", flush=True)
        emulator, azure_env = _start_emulator(work)
        print(f"==> Azure emulator started (ARM {azure_env['AMLOPS_ARM_ENDPOINT']})", flush=True)
        namespace = "amlops-demo"
        bed.kubectl("create", "namespace", namespace)
        log = (work / "operator.log").open("wb")
        operator = subprocess.Popen(
            [sys.executable, "-m", "amlops", "run", "--namespace", namespace, "--liveness", "off"],
            env={**bed.env(), **azure_env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        print(f"==> operator started (pid {operator.pid}, log {work / 'operator.log'})", flush=True)
        print(bed.kubectl("apply", "-n", namespace, "-f", str(SAMPLES)), end="", flush=True)
        deadline = time.monotonic() + timeout
        last = (-1, -1)
        while time.monotonic() < deadline:
            current = _observed(bed, namespace)
            if current != last:
                print(f"    observed {current[0]}/{current[1]} resources", flush=True)
                last = current
            if current[0] == current[1] > 0:
                break
            if operator.poll() is not None:
                print(f"operator exited with {operator.returncode}; see {work / 'operator.log'}", file=sys.stderr)
                return 1
            time.sleep(0.5)
        else:
            print("timed out waiting for the operator", file=sys.stderr)
            return 1
        print(bed.kubectl("get", "amlops", "-n", namespace), flush=True)
        print(f"KUBECONFIG={bed.kubeconfig} kubectl get amlops -n {namespace}    # to look around", flush=True)
        if exit_when_done:
            return 0
        print("Press Ctrl-C to stop the demo (everything it started stops with it).", flush=True)
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
        return 0
    finally:
        _stop(operator)
        _stop(emulator)
        bed.stop()
