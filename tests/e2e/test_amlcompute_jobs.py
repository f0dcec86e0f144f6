"""A command job submitted through azure-ai-ml's real ``MLClient`` scales an AmlCompute the operator manages up, and
the cluster goes back down after its idle time, visible in the operator's status (issue 17's acceptance case).

Real apiserver, operator process, emulator (``--azurite``) through the real SDKs. Evidence: Azure ML's autoscaling
("scales automatically each time you submit a job", nodes leave after ``nodeIdleTimeBeforeScaleDown``);
``examples/Compute/listNodes.json`` (a running node names its ``runId``); the status fields are the operator's
reading of ``properties.properties.currentNodeCount`` / ``nodeStateCounts`` (``Compute/get/AmlCompute.json``).
The emulator's clock runs 60x: 120 s of idle time pass in about 2 s; the job's script runs until the test lets
it finish, so the running node is seen while it is running, without a sleep.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from azure.ai.ml import command
from azure.ai.ml.entities import Command, Environment

import amlops_testbed as testbed
from tests.support.mlclient import workspace_client
from tests.support.objects import apply, wait_condition, wait_for
from tests.support.processes import StartAzure, StartOperator

from .test_amlcompute import compute_name, manifest

pytestmark = pytest.mark.e2e

WAIT_FOR_GO = """
import os, pathlib, time
probe = pathlib.Path(os.environ["PROBE"])
(probe / "started").write_text("yes")
while not (probe / "go").exists():
    time.sleep(0.05)
print("released")
"""


def _counts(obj: dict[str, Any]) -> tuple[int | None, int | None]:
    status = obj.get("status") or {}
    return status.get("currentNodeCount"), (status.get("nodeStateCounts") or {}).get("runningNodeCount")


def test_a_job_through_mlclient_scales_the_cluster_up_then_down(
    k8s: testbed.Testbed,
    namespace: str,
    start_operator: StartOperator,
    start_azure: StartAzure,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    azure = start_azure(60.0, "--azurite")
    start_operator(namespace, extra_env=azure.operator_env())
    cname = compute_name()
    settings = {"minNodeCount": 0, "maxNodeCount": 1, "nodeIdleTimeBeforeScaleDown": 120}
    apply(k8s, namespace, manifest("cpu", cname, scaleSettings=settings))
    wait_condition(k8s, "amlcompute", "cpu", namespace, "Ready")
    wait_for(k8s, "amlcompute", "cpu", namespace, lambda o: _counts(o)[0] == 0, what="an empty cluster")

    ml = workspace_client(azure, monkeypatch)
    src = tmp_path / "src"
    src.mkdir()
    (src / "wait.py").write_text(WAIT_FOR_GO)
    probe = tmp_path / "probe"
    probe.mkdir()
    job_name = f"scale-{uuid.uuid4().hex[:8]}"
    ml.jobs.create_or_update(
        command(
            name=job_name,
            code=str(src),
            command="python wait.py",
            environment=Environment(image="mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest"),
            compute=cname,
            environment_variables={"PROBE": str(probe)},
        )
    )

    # Scaled up for the job: one node, running it, in the operator's status and in listNodes.
    wait_for(k8s, "amlcompute", "cpu", namespace, lambda o: _counts(o) == (1, 1), what="one running node")
    nodes = [vars(n) for n in ml.compute.list_nodes(cname)]
    assert [(n["nodeState"], n.get("runId")) for n in nodes] == [("running", job_name)]

    (probe / "go").write_text("go")
    deadline = time.monotonic() + 120
    job = ml.jobs.get(job_name)
    while job.status not in ("Completed", "Failed", "Canceled"):
        assert time.monotonic() < deadline, f"job still {job.status}"
        time.sleep(0.2)  # the poll of a wait with a deadline
        job = ml.jobs.get(job_name)
    assert isinstance(job, Command)
    assert job.status == "Completed"

    # Idle, then away after nodeIdleTimeBeforeScaleDown: back to minNodeCount 0.
    wait_for(k8s, "amlcompute", "cpu", namespace, lambda o: _counts(o) == (0, 0), what="scaled back down to 0")
    assert [vars(n) for n in ml.compute.list_nodes(cname)] == []
