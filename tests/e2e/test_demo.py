"""The README's main command, run non-interactively: all three samples converge (the ParallelJob scores the
sample data on the emulator's Batch node agent), the final table and the output are printed, nothing is left."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from amlops import testbed

pytestmark = pytest.mark.e2e


def test_demo_runs_to_the_final_table_and_exits(tmp_path: Path) -> None:
    workdir = tmp_path / "demo-run"
    result = subprocess.run(
        [sys.executable, "-m", "amlops", "demo", "--exit", "--timeout", "180", "--workdir", str(workdir)],
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ParallelJob/score: Ready=True (Succeeded) Complete, mini-batches 10/10" in result.stdout
    assert "BatchCompute/batch: Ready=True" in result.stdout
    assert "AmlCompute/cpu-cluster: Ready=True" in result.stdout
    assert "parallel_run_step.txt" in result.stdout
    assert "first 5 of 100 rows:" in result.stdout
    assert "item-000.txt" in result.stdout
    for name in ("amlcompute.amlops.io/cpu-cluster", "batchcompute.amlops.io/batch", "paralleljob.amlops.io/score"):
        assert name in result.stdout
    # Every process the demo started names its work directory in its command line or environment.
    assert testbed.processes_mentioning(str(workdir)) == []
