"""``amlops demo``: the whole stack on this machine, one command.

Starts the real Kubernetes test bed, installs the CRDs, starts the operator, applies ``samples/``, shows the
resources converging, prints the final ``kubectl get amlops`` table and how to reach the cluster, then keeps
running until Ctrl-C (or exits at once with ``--exit``, which the test of this command uses).
"""

from __future__ import annotations

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
    import json

    items = json.loads(bed.kubectl("get", "amlops", "-n", namespace, "-o", "json"))["items"]
    done = sum(1 for i in items if (i.get("status") or {}).get("observedGeneration") == i["metadata"]["generation"])
    return done, len(items)


def run(*, exit_when_done: bool, timeout: float, workdir: Path | None = None) -> int:
    work = workdir or Path(tempfile.mkdtemp(prefix="amlops-demo-"))
    print(f"==> building or reusing the Kubernetes test bed (cache: {testbed.cache_dir()})", flush=True)
    bin_dir = testbed.ensure_built()
    bed = testbed.start(bin_dir, work / "testbed")
    operator: subprocess.Popen[bytes] | None = None
    try:
        print(f"==> kube-apiserver ready at {bed.server}", flush=True)
        testbed.install_crds(bed, CRDS)
        print("==> CRDs installed and Established", flush=True)
        namespace = "amlops-demo"
        bed.kubectl("create", "namespace", namespace)
        log = (work / "operator.log").open("wb")
        operator = subprocess.Popen(
            [sys.executable, "-m", "amlops", "run", "--namespace", namespace, "--liveness", "off"],
            env=bed.env(),
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
        if operator is not None and operator.poll() is None:
            os.killpg(operator.pid, signal.SIGTERM)
            try:
                operator.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(operator.pid, signal.SIGKILL)
                operator.wait()
        bed.stop()
