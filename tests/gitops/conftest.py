"""Fixtures of the GitOps tests: the kstatus probe, the operator with its metrics port, a Prometheus server."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.gitops import gitops_support
from tests.gitops.gitops_support import Operator, running_operator

import amlops_testbed as testbed


@pytest.fixture(scope="session")
def kstatus_bin() -> Path:
    return gitops_support.build_kstatus()


@pytest.fixture
def operator_with_metrics(k8s: testbed.Testbed, tmp_path: Path) -> Iterator[Callable[[str], Operator]]:
    with contextlib.ExitStack() as stack:
        yield lambda namespace: stack.enter_context(running_operator(k8s, namespace, tmp_path))
