"""Session-wide fixtures: the real Kubernetes test bed, a namespace per test, the operator as a process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from amlops import testbed

REPO = Path(__file__).resolve().parents[1]
CRDS = REPO / "crds"


@pytest.fixture(scope="session")
def k8s(tmp_path_factory: pytest.TempPathFactory) -> Iterator[testbed.Testbed]:
    """etcd + kube-apiserver (built from Go modules into the cache), CRDs installed and Established."""
    bin_dir = testbed.ensure_built()
    bed = testbed.start(bin_dir, tmp_path_factory.mktemp("testbed"))
    try:
        testbed.install_crds(bed, CRDS)
        yield bed
    finally:
        bed.stop()


@pytest.fixture
def namespace(k8s: testbed.Testbed, request: pytest.FixtureRequest) -> str:
    """A fresh namespace per test (never deleted: no controller-manager runs to finish the deletion)."""
    base = request.node.name.lower().replace("_", "-")
    name = "".join(ch for ch in base if ch.isalnum() or ch == "-")[:40].strip("-")
    ns = f"{name}-{uuid.uuid4().hex[:6]}"
    k8s.kubectl("create", "namespace", ns)
    return ns


class OperatorProcess:
    """``amlops run`` as a child process against the test bed, watching one namespace."""

    def __init__(self, proc: subprocess.Popen[bytes], log: Path, liveness: str) -> None:
        self.proc = proc
        self.log = log
        self.liveness = liveness

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture
def start_operator(k8s: testbed.Testbed, tmp_path: Path) -> Iterator[Callable[..., OperatorProcess]]:
    started: list[OperatorProcess] = []

    def start(*namespaces: str, extra_env: dict[str, str] | None = None) -> OperatorProcess:
        port = testbed.free_port()
        liveness = f"http://127.0.0.1:{port}/healthz"
        log = tmp_path / f"operator-{len(started)}.log"
        args = [sys.executable, "-m", "amlops", "run", "--liveness", liveness, "--verbose"]
        for ns in namespaces:
            args += ["--namespace", ns]
        with log.open("wb") as out:
            proc = subprocess.Popen(
                args,
                env={**k8s.env(), **(extra_env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        op = OperatorProcess(proc, log, liveness)
        started.append(op)
        _wait_live(op)
        return op

    yield start
    for op in started:
        op.stop()


def _wait_live(op: OperatorProcess, timeout: float = 60.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if op.proc.poll() is not None:
            raise RuntimeError(f"operator exited with {op.proc.returncode}:\n{op.output()[-3000:]}")
        try:
            with urllib.request.urlopen(op.liveness, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"operator not live after {timeout}s:\n{op.output()[-3000:]}")
