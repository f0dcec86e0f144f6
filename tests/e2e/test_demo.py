"""The README's main command, run non-interactively: the demo reaches its final table and cleans up."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e


def test_demo_runs_to_the_final_table_and_exits(tmp_path: object) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "amlops", "demo", "--exit", "--timeout", "180"],
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "observed 3/3 resources" in result.stdout
    for name in ("amlcompute.amlops.io/cpu-cluster", "batchcompute.amlops.io/batch", "paralleljob.amlops.io/score"):
        assert name in result.stdout
    leftovers = subprocess.run(["pgrep", "-f", "amlops-demo-"], capture_output=True, text=True, check=False)
    assert leftovers.stdout == ""
