"""The README's main command as a user runs it: every sample converges (the ParallelJob scores the sample data on
the emulator's Batch node agent, the CommandJob trains on the AmlCompute through azure-ai-ml), the final table and
the output are printed, and Ctrl-C stops everything the demo started, each process gracefully (issue 14: children
used to inherit a blocked SIGTERM and waited out their whole grace period before being killed)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

import amlops_testbed as testbed

pytestmark = pytest.mark.e2e


def test_demo_runs_to_the_final_table_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    workdir = tmp_path / "demo-run"
    out = tmp_path / "demo.out"
    with out.open("w") as sink:
        demo = subprocess.Popen(
            [sys.executable, "-m", "amlops", "demo", "--timeout", "180", "--workdir", str(workdir)],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        testbed.eventually(
            lambda: "Press Ctrl-C" in out.read_text() or demo.poll() is not None, timeout=400, what="the demo's table"
        )
        demo.send_signal(signal.SIGINT)  # what Ctrl-C sends to the foreground process
        demo.wait(timeout=120)
    finally:
        testbed.terminate(demo)
    stdout = out.read_text()
    assert demo.returncode == 0, stdout
    assert "==> stopping the demo" in stdout
    # The operator stopped on its SIGTERM (kopf says so), not after its grace period with a SIGKILL.
    assert "Signal SIGTERM is received" in (workdir / "operator.log").read_text()
    result = subprocess.CompletedProcess(demo.args, demo.returncode, stdout, "")
    assert "ParallelJob/score: Ready=True (Succeeded) Complete, mini-batches 10/10" in result.stdout
    assert "BatchCompute/batch: Ready=True" in result.stdout
    assert "AmlCompute/cpu-cluster: Ready=True" in result.stdout
    # The CommandJob sample trained on that cluster through azure-ai-ml; its model is on the workspace's datastore.
    assert "CommandJob/train: Ready=True (Succeeded) Complete, Azure ML Completed" in result.stdout
    assert "CommandJob model: azureml://datastores/workspaceblobstore/paths/azureml/cj-" in result.stdout
    assert "parallel_run_step.txt" in result.stdout
    assert "first 5 of 100 rows:" in result.stdout
    assert "item-000.txt" in result.stdout
    for name in (
        "amlcompute.amlops.io/cpu-cluster",
        "batchcompute.amlops.io/batch",
        "paralleljob.amlops.io/score",
        "commandjob.amlops.io/train",
    ):
        assert name in result.stdout
    # Every process the demo started names its work directory in its command line or environment.
    assert testbed.processes_mentioning(str(workdir)) == []
