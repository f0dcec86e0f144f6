"""Fixtures of the GitOps tests: the kstatus probe, the operator with its metrics port, a Prometheus server."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from amlops import testbed

# --import-mode=importlib puts no test folder on sys.path; the helpers live next to the tests.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import gitops_support
from gitops_support import Operator, running_operator


@pytest.fixture(scope="session")
def kstatus_bin() -> Path:
    return gitops_support.build_kstatus()


@pytest.fixture
def operator_with_metrics(k8s: testbed.Testbed, tmp_path: Path) -> Iterator[Callable[[str], Operator]]:
    with contextlib.ExitStack() as stack:
        yield lambda namespace: stack.enter_context(running_operator(k8s, namespace, tmp_path))
