"""CommandJob end to end (issue 19's acceptance): the real apiserver, the operator process, the emulator with Azurite;
the operator builds the job with azure-ai-ml's own ``command()`` and submits it with its ``MLClient``.

Evidence for what Azure ML answers: the emulator's command jobs (``emulator/src/amlops_emulator/ml/jobs.py``,
``execution.py``): azure-ai-ml 1.35.2's ``JobStatus`` names; an output given no path lands at
``azureml://datastores/workspaceblobstore/paths/azureml/{job}/{output}/`` (the emulator's assumption, said there);
a failed run's error in run history is ``UserError`` "Execution failed. User process 'python' exited with status
code N ..." (a public troubleshooting guide quotes that wording, execution.py cites it); a run's logs are under
``ExperimentRun/dcid.{job}/user_logs/``, named as azure-ai-ml's ``COMMON_RUNTIME_STREAM_LOG_PATTERN`` reads them;
the distributed environment (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ...) is Azure ML's "Distributed GPU training
guide"'s.

The emulator's clock runs 60x (nodes come within seconds); the scripts run in real time. Every wait is on the
object's status with a deadline.
"""

from __future__ import annotations

import json
import signal
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from azure.storage.blob import BlobServiceClient, ContainerClient

import amlops_testbed as testbed
from amlops_emulator.azurite import DEVSTORE_KEY
from tests.support.mlclient import storage_env
from tests.support.objects import apply, condition, events, try_apply, wait_condition, wait_for, wait_gone
from tests.support.processes import EmulatorProcess, StartAzure, StartOperator
from tests.support.rank_scripts import MPI_ENV, RENDEZVOUS

from .test_amlcompute import WORKSPACE, WS_PATH

pytestmark = pytest.mark.e2e

IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest"
JOB_WITHIN = 180.0  # real seconds: node allocation at 60x, preparation, azure-ai-ml's code upload, the script
TRAIN = """
import argparse, pathlib
parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int)
parser.add_argument("--out")
args = parser.parse_args()
out = pathlib.Path(args.out)
out.mkdir(parents=True, exist_ok=True)
(out / "model.txt").write_text(f"weights after {args.epochs} epochs")
print("trained into", out)
"""
# Says it started ($PROBE/started-<attempt's job>), then runs until the test writes $PROBE/go.
WAIT_FOR_GO = """
import os, pathlib, time
probe = pathlib.Path(os.environ["PROBE"])
(probe / ("started-" + os.environ.get("AZUREML_RUN_ID", "run"))).write_text("yes")
while not (probe / "go").exists():
    time.sleep(0.05)
print("released")
"""
FAIL = """
import sys
print("loading data")
print("about to fail: no data here")
sys.exit(3)
"""


@dataclass(frozen=True)
class Workspace:
    """An operator on an emulator with Azurite, an AmlCompute ``cpu`` (0..2 nodes) Ready in ``namespace``, the
    training scripts in ConfigMap ``train-code``; ``container``: workspaceblobstore's container in Azurite."""

    k8s: testbed.Testbed
    namespace: str
    azure: EmulatorProcess
    container: ContainerClient
    operator: testbed.OperatorRun
    start_operator: Callable[[], testbed.OperatorRun]  # another operator process with the same environment

    def blob(self, name: str) -> str:
        return self.container.get_blob_client(name).download_blob().readall().decode()


@pytest.fixture
def workspace(
    k8s: testbed.Testbed, namespace: str, start_operator: StartOperator, start_azure: StartAzure
) -> Iterator[Workspace]:
    azure = start_azure(60.0, "--azurite")
    endpoints = azure.run.endpoints
    storage = endpoints["storage"]
    env = {
        **azure.operator_env(),
        **storage_env(endpoints),  # azure-ai-ml's storage clients (the code upload) reach Azurite through it
        "AMLOPS_STORAGE_ENDPOINT_SUFFIX": storage["storageEndpointSuffix"],
    }
    operator = start_operator(namespace, extra_env=env)
    # azure-ai-ml asks for an Azure ML token (a JWT) on submission: a service principal's, as the emulator's
    # identity platform issues them (a static token is no JWT).
    k8s.kubectl("create", "secret", "generic", "azure-sp", "-n", namespace,
                *(f"--from-literal={k}={v}" for k, v in endpoints["servicePrincipal"].items()))  # fmt: skip
    apply(k8s, namespace, _aml_compute())
    code = {"train.py": TRAIN, "fail.py": FAIL, "ranks.py": RENDEZVOUS, "mpi.py": MPI_ENV, "wait.py": WAIT_FOR_GO}
    apply(k8s, namespace, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "train-code"}, "data": code})
    wait_condition(k8s, "amlcompute", "cpu", namespace, "Ready")
    credential = {"account_name": storage["accountName"], "account_key": DEVSTORE_KEY}
    with BlobServiceClient(storage["serviceUrl"], credential=credential, connection_verify=azure.ca_file) as blobs:
        [store] = [c.name for c in blobs.list_containers(name_starts_with="azureml-blobstore-")]
        container = blobs.get_container_client(store)
        yield Workspace(k8s, namespace, azure, container, operator, lambda: start_operator(namespace, extra_env=env))


def _aml_compute() -> str:
    body = {
        "apiVersion": "amlops.io/v1alpha1",
        "kind": "AmlCompute",
        "metadata": {"name": "cpu"},
        "spec": {
            "workspace": WORKSPACE,
            "computeName": "c" + uuid.uuid4().hex[:8],
            "vmSize": "STANDARD_DS3_V2",
            "scaleSettings": {"minNodeCount": 0, "maxNodeCount": 2, "nodeIdleTimeBeforeScaleDown": 120},
            "credentials": {"secretRef": {"name": "azure-sp"}},
            "reportActiveRuns": True,
        },
    }
    return yaml.safe_dump(body)


def command_job(name: str, **spec: Any) -> str:
    body = {
        "apiVersion": "amlops.io/v1alpha1",
        "kind": "CommandJob",
        "metadata": {"name": name},
        "spec": {"compute": "cpu", "codeConfigMap": "train-code", "environment": {"image": IMAGE}, **spec},
    }
    return yaml.safe_dump(body)


def wait_phase(ws: Workspace, name: str, phase: str) -> dict[str, Any]:
    """The CommandJob once its phase is ``phase`` (failing fast, with its status, if it ends otherwise)."""

    def reached(obj: dict[str, Any]) -> bool:
        now = (obj.get("status") or {}).get("phase")
        assert not (now in ("Complete", "Failed") and now != phase), f"ended {now}: {obj.get('status')}"
        return bool(now == phase)

    return wait_for(ws.k8s, "commandjob", name, ws.namespace, reached, what=f"phase {phase}", timeout=JOB_WITHIN)


def test_a_training_script_writes_its_model_to_its_output(workspace: Workspace) -> None:
    """The Estimator's classic: ``source_directory`` (here a ConfigMap), ``entry_script`` with ``script_params``
    (an integer input), an output folder: Complete, the model file is in Azurite at the output Azure ML reports,
    and the status has the Azure ML job's name, its Studio link and its times."""
    ws = workspace
    apply(
        ws.k8s,
        ws.namespace,
        command_job(
            "train",
            command="python train.py --epochs ${{inputs.epochs}} --out ${{outputs.model}}",
            inputs={"epochs": {"type": "integer", "value": "3"}},
            outputs={"model": {}},
            experimentName="amlops-e2e",
            tags={"team": "vision"},
            identity={"type": "user_identity"},
        ),
    )

    obj = wait_phase(ws, "train", "Complete")

    status, uid = obj["status"], obj["metadata"]["uid"]
    assert status["azureJobName"] == f"cj-{uid}"
    assert status["azureStatus"] == "Completed"
    assert condition(obj, "Complete")["status"] == "True"
    assert condition(obj, "Ready")["status"] == "True"
    assert f"/runs/cj-{uid}?wsid={WS_PATH}" in status["studioUrl"]
    assert status["startTime"] <= status["completionTime"]
    assert status["outputs"]["model"] == f"azureml://datastores/workspaceblobstore/paths/azureml/cj-{uid}/model/"
    assert ws.blob(f"azureml/cj-{uid}/model/model.txt") == "weights after 3 epochs"
    assert "trained into" in ws.blob(f"ExperimentRun/dcid.cj-{uid}/user_logs/std_log.txt")
    assert status.get("error") is None
    # The jobs REST API's identity (IdentityConfiguration: identityType UserIdentity), as azure-ai-ml sends it.
    assert azure_job(ws, f"cj-{uid}")["properties"]["identity"]["identityType"] == "UserIdentity"
    assert status.get("logTail") is None


def test_a_failing_script_fails_with_azures_error_and_the_log_tail(workspace: Workspace) -> None:
    """``sys.exit(3)``: Failed, Stalled with Azure's error code (``UserError``) and message, the driver log's last
    lines in ``status.logTail``, a Warning Event."""
    ws = workspace
    apply(ws.k8s, ws.namespace, command_job("broken", command="python fail.py"))

    obj = wait_phase(ws, "broken", "Failed")

    status = obj["status"]
    assert status["azureStatus"] == "Failed"
    assert status["error"]["code"] == "UserError"
    assert "exited with status code 3" in status["error"]["message"]
    assert status["logTail"].splitlines()[-1] == "about to fail: no data here"
    failed, stalled = condition(obj, "Failed"), condition(obj, "Stalled")
    assert (failed["status"], failed["reason"]) == ("True", "UserError")
    assert (stalled["status"], stalled["reason"]) == ("True", "UserError")
    assert condition(obj, "Ready")["status"] == "False"
    warned = testbed.eventually(lambda: events(ws.k8s, ws.namespace, reason="UserError"), what="a UserError Event")
    assert {(e["type"], e["involvedObject"]["name"]) for e in warned} == {("Warning", "broken")}


@pytest.mark.parametrize(
    ("distribution", "script", "seen"),
    [
        pytest.param(
            "PyTorch",
            "ranks.py",
            lambda s: (s["RANK"], s["WORLD_SIZE"], s["LOCAL_RANK"], s["NODE_RANK"]),
            id="pytorch: ranks meet over MASTER_ADDR:MASTER_PORT",
        ),
        pytest.param(
            "Mpi",
            "mpi.py",
            lambda s: (s["OMPI_COMM_WORLD_RANK"], s["OMPI_COMM_WORLD_SIZE"], s["OMPI_COMM_WORLD_LOCAL_RANK"], None),
            id="mpi: Open MPI's world",
        ),
    ],
)
def test_two_nodes_by_two_processes(
    workspace: Workspace, distribution: str, script: str, seen: Callable[[dict[str, str]], tuple[Any, ...]]
) -> None:
    """The Estimator's ``node_count=2``, ``process_count_per_node=2``, ``distributed_training``: four ranks on two
    nodes of the AmlCompute, each writing what it saw into the shared output."""
    ws = workspace
    apply(
        ws.k8s,
        ws.namespace,
        command_job(
            "dist",
            command=f"python {script} ${{{{outputs.ranks}}}}",
            outputs={"ranks": {}},
            resources={"instanceCount": 2},
            distribution={"type": distribution, "processCountPerInstance": 2},
        ),
    )

    obj = wait_phase(ws, "dist", "Complete")

    uid = obj["metadata"]["uid"]
    ranks = [json.loads(ws.blob(f"azureml/cj-{uid}/ranks/rank{rank}.json")) for rank in range(4)]
    node_rank = (lambda r: str(r // 2)) if distribution == "PyTorch" else (lambda r: None)
    expected = [(str(r), "4", str(r % 2), node_rank(r)) for r in range(4)]
    assert [seen(s) for s in ranks] == expected
    if distribution == "PyTorch":
        assert ranks[0]["peers"] == [1, 2, 3], "every other rank reached rank 0"


def azure_job(ws: Workspace, name: str) -> dict[str, Any]:
    """The Azure ML job as the jobs REST API answers it (``Jobs_Get``)."""
    code, body = ws.azure.arm("GET", f"{WS_PATH}/jobs/{name}", api_version="2024-01-01-preview")
    assert code == 200, body
    assert isinstance(body, dict)
    return body


def waiting_job(ws: Workspace, name: str, probe: Path, **spec: Any) -> dict[str, Any]:
    """A CommandJob running wait.py, once its script has started; the object as it was then."""
    apply(ws.k8s, ws.namespace, command_job(name, command="python wait.py",
                                             environmentVariables={"PROBE": str(probe)}, **spec))  # fmt: skip
    obj = wait_phase(ws, name, "Running")
    started = probe / f"started-cj-{obj['metadata']['uid']}"
    testbed.eventually(started.exists, timeout=JOB_WITHIN, what="the script started")
    return obj


def patch_spec(ws: Workspace, name: str, **spec: Any) -> None:
    ws.k8s.kubectl("patch", f"commandjob/{name}", "-n", ws.namespace, "--type=merge", "-p",
                   json.dumps({"spec": spec}))  # fmt: skip


def test_suspend_cancels_the_job_and_resume_submits_it_anew(workspace: Workspace, tmp_path: Path) -> None:
    """batch/v1 Job's ``suspend``: true cancels the running Azure ML job (Suspended, not Ready); false submits a new
    attempt (``cj-<uid>-1``: the canceled job keeps its name and history), which runs to Complete."""
    ws, probe = workspace, tmp_path / "probe"
    probe.mkdir()
    uid = waiting_job(ws, "long", probe)["metadata"]["uid"]

    patch_spec(ws, "long", suspend=True)
    obj = wait_condition(ws.k8s, "commandjob", "long", ws.namespace, "Suspended")
    obj = wait_for(ws.k8s, "commandjob", "long", ws.namespace, lambda o: o["status"].get("azureStatus") == "Canceled",
                   what="its Azure ML job canceled")  # fmt: skip
    assert obj["status"]["phase"] == "Suspended"
    assert azure_job(ws, f"cj-{uid}")["properties"]["status"] == "Canceled"
    assert condition(obj, "Suspended")["status"] == "True"
    assert condition(obj, "Ready")["status"] == "False"

    patch_spec(ws, "long", suspend=False)
    testbed.eventually((probe / f"started-cj-{uid}-1").exists, timeout=JOB_WITHIN, what="the next attempt started")
    (probe / "go").write_text("go")
    obj = wait_phase(ws, "long", "Complete")

    assert (obj["status"]["azureJobName"], obj["status"]["attempt"]) == (f"cj-{uid}-1", 1)
    assert azure_job(ws, f"cj-{uid}")["properties"]["status"] == "Canceled", "the first attempt stays canceled"


def test_the_compute_lists_the_running_job_and_deleting_the_object_cancels_it(
    workspace: Workspace, tmp_path: Path
) -> None:
    """While the job runs, its AmlCompute has scaled up for it and lists it in ``status.activeRuns`` (the seed's
    ``get_active_runs``) with the object that owns it. deletionPolicy Delete (the default): the finalizer is
    released once the Azure ML job is canceled, and the job leaves activeRuns."""
    ws, probe = workspace, tmp_path / "probe"
    probe.mkdir()
    uid = waiting_job(ws, "doomed", probe)["metadata"]["uid"]
    run = {"name": f"cj-{uid}", "type": "command", "status": "Running", "owner": f"{ws.namespace}/doomed"}
    compute = wait_for(ws.k8s, "amlcompute", "cpu", ws.namespace, lambda o: run in _runs(o), what="the job listed")
    assert compute["status"]["currentNodeCount"] >= 1

    ws.k8s.kubectl("delete", "commandjob/doomed", "-n", ws.namespace, "--wait=false")
    wait_gone(ws.k8s, "commandjob", "doomed", ws.namespace, timeout=JOB_WITHIN)

    assert azure_job(ws, f"cj-{uid}")["properties"]["status"] == "Canceled"
    wait_for(ws.k8s, "amlcompute", "cpu", ws.namespace, lambda o: _runs(o) == [], what="no active run left")


def test_deletion_policy_orphan_leaves_the_job_running(workspace: Workspace, tmp_path: Path) -> None:
    """deletionPolicy Orphan: the object goes at once and its Azure ML job runs on (to Completed here)."""
    ws, probe = workspace, tmp_path / "probe"
    probe.mkdir()
    uid = waiting_job(ws, "left", probe, deletionPolicy="Orphan")["metadata"]["uid"]

    ws.k8s.kubectl("delete", "commandjob/left", "-n", ws.namespace, "--wait=false")
    wait_gone(ws.k8s, "commandjob", "left", ws.namespace)

    assert azure_job(ws, f"cj-{uid}")["properties"]["status"] == "Running"
    (probe / "go").write_text("go")
    testbed.eventually(lambda: azure_job(ws, f"cj-{uid}")["properties"]["status"] == "Completed",
                       timeout=JOB_WITHIN, what="the orphaned job completed")  # fmt: skip


def _runs(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """An AmlCompute's activeRuns without their display names (Azure ML's default one is the job's own)."""
    runs = (obj.get("status") or {}).get("activeRuns") or []
    return [{k: v for k, v in run.items() if k != "displayName"} for run in runs]


def test_active_deadline_cancels_and_fails_the_job(workspace: Workspace, tmp_path: Path) -> None:
    """``activeDeadlineSeconds`` (batch/v1 Job's, counted from startTime, the submission): past it, amlops cancels
    the Azure ML job, whether it still waits for nodes or runs, and the object is Failed DeadlineExceeded."""
    ws, probe = workspace, tmp_path / "probe"
    probe.mkdir()
    apply(ws.k8s, ws.namespace, command_job("slow", command="python wait.py", activeDeadlineSeconds=2,
                                             environmentVariables={"PROBE": str(probe)}))  # fmt: skip

    obj = wait_phase(ws, "slow", "Failed")
    uid = obj["metadata"]["uid"]

    assert condition(obj, "Failed")["reason"] == "DeadlineExceeded"
    assert azure_job(ws, f"cj-{uid}")["properties"]["status"] == "Canceled"


def test_a_finished_job_goes_after_its_ttl(workspace: Workspace) -> None:
    """``ttlSecondsAfterFinished: 0``: the object deletes itself once Complete, as a batch/v1 Job does."""
    ws = workspace
    apply(ws.k8s, ws.namespace, command_job("brief", command="python train.py --epochs 1 --out outputs",
                                             ttlSecondsAfterFinished=0))  # fmt: skip

    wait_gone(ws.k8s, "commandjob", "brief", ws.namespace, timeout=JOB_WITHIN)


@pytest.mark.parametrize(
    ("spec", "message", "why"),
    [
        ({"useDocker": True}, "useDocker (Estimator: use_docker): Azure ML v2 runs every job in a container",
         "an Estimator parameter v2 dropped: refused with its replacement, not pruned in silence"),
        ({"nodeCount": 2}, "nodeCount (Estimator: node_count): use resources.instanceCount", "renamed in v2"),
        ({"vmSize": "STANDARD_NC6"}, "serverless compute is not offered", "vm_size without a target: not pruned"),
        ({"code": "azureml:train:1"}, "set exactly one of code", "both code and codeConfigMap"),
        ({"codeConfigMap": None, "code": "azureml://datastores/workspaceblobstore/paths/src/"},
         "spec.code in body should match", "azure-ai-ml's job validation refuses a datastore path as code"),
        ({"environment": {"name": "azureml:sklearn:1", "image": IMAGE}}, "set exactly one of environment.name",
         "a registered environment and an image"),
        ({"distribution": {"type": "TensorFlow", "processCountPerInstance": 2}}, "processCountPerInstance is",
         "a count of another distribution type"),
        ({"outputs": {"model": {}, "Model": {}}}, "differ only by case",
         "azure-ai-ml refuses names equal but for case"),
        ({"inputs": {"a-b": {"value": "1", "type": "integer"}}}, "names are letters, digits and _",
         "a name no ${{inputs.x}} can name"),
    ],
)  # fmt: skip
def test_the_apiserver_refuses(
    k8s: testbed.Testbed, namespace: str, spec: dict[str, Any], message: str, why: str
) -> None:
    """The schema's CEL rules, on the real apiserver: nothing reaches the operator."""
    refused = try_apply(k8s, namespace, command_job("bad", command="python train.py", **spec))
    assert refused.returncode != 0, why
    assert message in refused.stderr, refused.stderr


def test_the_spec_is_immutable_but_suspend(k8s: testbed.Testbed, namespace: str) -> None:
    """Once applied only suspend and deletionProtection change (no operator runs: the apiserver decides)."""
    apply(k8s, namespace, command_job("fixed", command="python train.py"))
    changed = try_apply(k8s, namespace, command_job("fixed", command="python other.py"))
    assert changed.returncode != 0
    assert "a CommandJob's spec is immutable except suspend and deletionProtection" in changed.stderr
    apply(k8s, namespace, command_job("fixed", command="python train.py", suspend=True, deletionProtection=True))


def test_limits_timeout_fails_the_job_with_azures_error(workspace: Workspace, tmp_path: Path) -> None:
    """``limits.timeout`` (the Estimator's ``max_run_duration_seconds``): Azure ML cancels the run and says why in
    run history (``JobTimeout``, the emulator's code: no public failed-run body shows Azure's): Failed with it."""
    ws, probe = workspace, tmp_path / "probe"
    probe.mkdir()
    apply(ws.k8s, ws.namespace, command_job("capped", command="python wait.py", limits={"timeout": 2},
                                             environmentVariables={"PROBE": str(probe)}))  # fmt: skip

    obj = wait_phase(ws, "capped", "Failed")

    assert obj["status"]["azureStatus"] == "Canceled"
    assert obj["status"]["error"]["code"] == "JobTimeout"
    assert condition(obj, "Failed")["reason"] == "JobTimeout"


def test_an_operator_killed_after_submitting_submits_no_second_job(workspace: Workspace) -> None:
    """SIGKILL right after the submission (the Azure ML job exists, the status may not say so yet): the next
    operator finds the job by its name, ``cj-<uid>``, and follows it to Complete; Azure ML has one job."""
    ws = workspace
    obj = apply(ws.k8s, ws.namespace, command_job("once", command="python train.py --epochs 1 --out outputs"))
    uid = obj["metadata"]["uid"]
    path = f"{WS_PATH}/jobs/cj-{uid}"
    testbed.eventually(lambda: ws.azure.arm("GET", path, api_version="2024-01-01-preview")[0] == 200,
                       timeout=JOB_WITHIN, interval=0.05, what="the job submitted")  # fmt: skip
    ws.operator.stop(signal.SIGKILL)

    ws.start_operator()
    wait_phase(ws, "once", "Complete")

    code, listing = ws.azure.arm("GET", f"{WS_PATH}/jobs", api_version="2024-01-01-preview")
    assert code == 200, listing
    assert [job["name"] for job in listing["value"] if uid in job["name"]] == [f"cj-{uid}"]


def test_an_operator_killed_mid_run_and_mid_cancel_follows_the_same_job(workspace: Workspace, tmp_path: Path) -> None:
    """SIGKILL while the job runs: the next operator follows the same job (no second submission) to Complete.
    Then SIGKILL right after a delete asked for the cancel of another job: the next one finishes the deletion and
    the Azure ML job is canceled, once."""
    ws, probe = workspace, tmp_path / "probe"
    probe.mkdir()
    uid = waiting_job(ws, "steady", probe)["metadata"]["uid"]
    ws.operator.stop(signal.SIGKILL)
    second = ws.start_operator()
    (probe / "go").write_text("go")
    obj = wait_phase(ws, "steady", "Complete")
    assert obj["status"]["azureJobName"] == f"cj-{uid}"
    code, listing = ws.azure.arm("GET", f"{WS_PATH}/jobs", api_version="2024-01-01-preview")
    assert code == 200, listing
    assert [job["name"] for job in listing["value"] if uid in job["name"]] == [f"cj-{uid}"]

    (probe / "go").unlink()
    other = waiting_job(ws, "doomed", probe)["metadata"]["uid"]
    ws.k8s.kubectl("delete", "commandjob/doomed", "-n", ws.namespace, "--wait=false")
    testbed.eventually(
        lambda: azure_job(ws, f"cj-{other}")["properties"]["status"] in ("CancelRequested", "Canceled"),
        timeout=JOB_WITHIN, interval=0.05, what="the cancel reached Azure ML",
    )  # fmt: skip
    second.stop(signal.SIGKILL)
    ws.start_operator()
    wait_gone(ws.k8s, "commandjob", "doomed", ws.namespace, timeout=JOB_WITHIN)
    assert azure_job(ws, f"cj-{other}")["properties"]["status"] == "Canceled"
