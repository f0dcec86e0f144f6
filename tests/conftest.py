"""Session-wide fixtures: the real Kubernetes test bed, a namespace per test, the operator as a process."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import amlops_testbed as testbed
from tests.support.processes import EmulatorProcess, StartAzure, StartOperator
from tests.support.tiers import pytest_collection_modifyitems  # noqa: F401  (a hook: pytest finds it here)

# pytester: a unit test runs a small session to prove the tier check (tests/support/tiers.py) stops the run.
pytest_plugins = ["pytester"]

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


@pytest.fixture
def start_operator(k8s: testbed.Testbed, tmp_path: Path) -> Iterator[StartOperator]:
    """Start ``amlops run`` watching the given namespaces, live when returned; all are stopped after the test."""
    started: list[testbed.OperatorRun] = []

    def start(*namespaces: str, extra_env: dict[str, str] | None = None, verbose: bool = True) -> testbed.OperatorRun:
        # Verbose by default (a failing test shows every step); a test of thousands of objects turns it off.
        args = ["--verbose"] if verbose else []
        for ns in namespaces:
            args += ["--namespace", ns]
        log = tmp_path / f"operator-{len(started)}.log"
        op = testbed.start_operator(k8s, log, *args, env=extra_env)
        started.append(op)
        return op

    yield start
    for op in started:
        op.stop()


@pytest.fixture
def start_azure(tmp_path: Path) -> Iterator[StartAzure]:
    """Start ``amlops emulator`` processes (ARM over HTTPS + Batch); all are stopped after the test."""
    started: list[EmulatorProcess] = []

    def start(speed: float = 60.0, *extra_args: str) -> EmulatorProcess:
        """``extra_args``: emulator flags, e.g. ``--writes-bucket 100000`` for a test of many objects."""
        state = tmp_path / f"emulator-{len(started)}"
        emulator = EmulatorProcess(testbed.start_emulator(state, *extra_args, speed=speed))
        started.append(emulator)
        return emulator

    yield start
    for emulator in started:
        emulator.stop()


@pytest.fixture
def azure(start_azure: StartAzure) -> EmulatorProcess:
    """A fresh emulator per test, its clock 60x real time."""
    return start_azure(60.0)
