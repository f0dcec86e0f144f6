"""Session-wide fixtures: the real Kubernetes test bed, a namespace per test, the operator as a process."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import amlops_testbed as testbed
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
def start_operator(k8s: testbed.Testbed, tmp_path: Path) -> Iterator[Callable[..., testbed.OperatorRun]]:
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


class EmulatorProcess:
    """An emulator process (``amlops_testbed.start_emulator``) with raw HTTPS helpers for assertions and faults."""

    def __init__(self, run: testbed.EmulatorRun) -> None:
        self.run = run
        self.proc = run.proc
        self.log = run.log
        endpoints = run.endpoints
        self.arm_url: str = endpoints["armUrl"]
        self.batch_url: str | None = endpoints.get("batchUrl")
        self.control_url: str = endpoints["controlUrl"]
        self.ca_file: str = endpoints["caFile"]
        self.token: str = endpoints["token"]

    def operator_env(self) -> dict[str, str]:
        return self.run.operator_env(
            AMLOPS_POLL_FLOOR_SECONDS="0.5",
            AMLOPS_POLL_CEILING_SECONDS="5",
            AMLOPS_REQUEUE_SECONDS="1",
            AMLOPS_STALLED_RECHECK_SECONDS="5",
        )

    def request(self, method: str, url: str, body: Any = None, *, auth: bool = True) -> tuple[int, Any]:
        ctx = ssl.create_default_context(cafile=self.ca_file)
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if auth:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=10) as response:
                text = response.read()
                return response.status, json.loads(text) if text else None
        except urllib.error.HTTPError as e:
            text = e.read()
            return e.code, json.loads(text) if text else None

    def arm(self, method: str, path: str, body: Any = None, api_version: str = "2020-08-01") -> tuple[int, Any]:
        sep = "&" if "?" in path else "?"
        return self.request(method, f"{self.arm_url}{path}{sep}api-version={api_version}", body)

    def control(self, method: str, path: str, body: Any = None) -> Any:
        status, answer = self.request(method, f"{self.control_url}{path}", body, auth=False)
        assert status < 300, (status, answer)
        return answer

    def operations(self) -> dict[str, int]:
        """Calls per SDK operation id since the last reset of the statistics."""
        stats = self.control("GET", "/stats")
        return {name: op["count"] for name, op in stats["operations"].items()}

    def stop(self) -> None:
        self.run.stop()


@pytest.fixture
def start_azure(tmp_path: Path) -> Iterator[Callable[..., EmulatorProcess]]:
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
def azure(start_azure: Callable[..., EmulatorProcess]) -> EmulatorProcess:
    """A fresh emulator per test, its clock 60x real time."""
    return start_azure(60.0)
