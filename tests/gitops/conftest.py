"""Fixtures of the GitOps tests: the kstatus probe."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.gitops import gitops_support


@pytest.fixture(scope="session")
def kstatus_bin() -> Path:
    return gitops_support.build_kstatus()
