"""Command jobs through azure-ai-ml 1.35.2's real ``MLClient``: they run on the emulator's AmlCompute.

Evidence: azure-ai-ml 1.35.2's ``_job_operations.py`` (a command job PUT at 2025-01-01-preview, GET and list at
2024-01-01-preview, cancel at 2023-02-01-preview: the calls seen here), its ``JobStatus`` enum for the status
names, the swagger's ``Command`` (``stable/2024-10-01/machineLearningServices.json``: status, outputs with
``uri``; no start/end time and no error in the ARM body); Azure ML's "Distributed GPU training guide" for the
PyTorch variables (as tests/emulator/arm/test_cluster_runs.py). Where an answer is the emulator's own (an
output's default path, the wording of a refusal), the test says so.

The emulator runs its clock at 60x (conftest), so nodes come within seconds; user processes run in real time:
tests wait on the job's status with a deadline, never on a sleep.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from azure.ai.ml import MLClient, Output, command
from azure.ai.ml.exceptions import JobException
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobServiceClient

from amlops_emulator.seed import (
    DEFAULT_BATCH_ACCOUNT,
    DEFAULT_LOCATION,
    DEFAULT_RESOURCE_GROUP,
    DEFAULT_SUBSCRIPTION,
    DEFAULT_WORKSPACE,
)
from tests.support.jobs import ENVIRONMENT, WAIT_SCRIPT, WITHIN, blob_text, finished, unique
from tests.support.processes import EmulatorProcess
from tests.support.rank_scripts import MPI_ENV, RENDEZVOUS

pytestmark = pytest.mark.emulator

TRAIN = """
import argparse, pathlib
parser = argparse.ArgumentParser()
parser.add_argument("--out")
args = parser.parse_args()
out = pathlib.Path(args.out)
out.mkdir(parents=True, exist_ok=True)
(out / "model.txt").write_text("weights")
print("trained into", out)
"""

FAIL = """
import sys
print("about to fail")
sys.exit(3)
"""


@pytest.fixture
def src(tmp_path: Path) -> Path:
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "train.py").write_text(TRAIN)
    (folder / "fail.py").write_text(FAIL)
    (folder / "wait.py").write_text(WAIT_SCRIPT)
    (folder / "ranks.py").write_text(RENDEZVOUS)
    (folder / "mpi.py").write_text(MPI_ENV)
    return folder


def _start_and_wait(ml: MLClient, name: str, src: Path, script: str, cluster: str, probe: Path) -> None:
    """Submit a command job whose script writes ``$PROBE/started`` first, and wait until it has."""
    ml.jobs.create_or_update(
        command(
            name=name,
            code=str(src),
            command=script,
            environment=ENVIRONMENT,
            compute=cluster,
            environment_variables={"PROBE": str(probe)},
        )
    )
    deadline = time.monotonic() + WITHIN
    while not (probe / "started").exists():
        assert time.monotonic() < deadline, "the script never started"
        time.sleep(0.1)


def test_command_job_with_local_code_completes_with_its_output_in_azurite(
    ml: MLClient, cluster: str, src: Path, blobs: BlobServiceClient
) -> None:
    """The issue's first acceptance case: ``command(code=./src, command="python train.py --out
    ${{outputs.model}}", compute=...)``. azure-ai-ml uploads the code (anonymous code version), registers the
    anonymous environment and PUTs the job; the job goes through ``Queued`` to ``Completed`` (``JobStatus``),
    its output at ``azureml://datastores/workspaceblobstore/paths/azureml/{job}/model/`` (the emulator's default
    for an output given no path) holds what the script wrote, and ``user_logs/std_log.txt`` its stdout."""
    name = unique("train")
    submitted = ml.jobs.create_or_update(
        command(
            name=name,
            code=str(src),
            command="python train.py --out ${{outputs.model}}",
            environment=ENVIRONMENT,
            compute=cluster,
            outputs={"model": Output(type="uri_folder")},
        )
    )
    assert submitted.name == name
    assert submitted.status in ("NotStarted", "Queued", "Preparing", "Running")
    assert submitted.compute == cluster

    job = finished(ml, name)

    assert job.status == "Completed"
    # The emulator's own StartTimeUtc/EndTimeUtc (jobs.py says why): started, then ended.
    assert job.properties["StartTimeUtc"] <= job.properties["EndTimeUtc"]
    assert job.outputs["model"].path == f"azureml://datastores/workspaceblobstore/paths/azureml/{name}/model/"
    assert blob_text(blobs, ml, f"azureml/{name}/model/model.txt") == "weights"
    assert "trained into" in blob_text(blobs, ml, f"ExperimentRun/dcid.{name}/user_logs/std_log.txt")
    assert name in [j.name for j in ml.jobs.list()]


def test_failing_script_fails_the_job_with_its_log(
    ml: MLClient, cluster: str, src: Path, blobs: BlobServiceClient
) -> None:
    """A script exiting 3: the job ends ``Failed`` (``JobStatus``); the ARM job body carries no error (the
    swagger's ``Command`` has none), the user log with the script's output is in the artifact folder."""
    name = unique("fail")
    ml.jobs.create_or_update(
        command(name=name, code=str(src), command="python fail.py", environment=ENVIRONMENT, compute=cluster)
    )

    job = finished(ml, name)

    assert job.status == "Failed"
    assert "about to fail" in blob_text(blobs, ml, f"ExperimentRun/dcid.{name}/user_logs/std_log.txt")


def test_cancel_a_running_job(ml: MLClient, cluster: str, src: Path, tmp_path: Path) -> None:
    """``jobs.begin_cancel`` (POST ``cancel``, a long-running operation azure-core polls through ``Location``):
    the running script is killed and the job ends ``Canceled``."""
    probe = tmp_path / "probe"
    probe.mkdir()
    name = unique("cancel")
    _start_and_wait(ml, name, src, "python wait.py", cluster, probe)

    ml.jobs.begin_cancel(name).result()

    assert finished(ml, name).status == "Canceled"


def test_two_by_two_pytorch_job_ranks_see_their_environment(
    ml: MLClient, cluster: str, src: Path, blobs: BlobServiceClient
) -> None:
    """``instance_count=2``, ``distribution=PyTorch(process_count_per_instance=2)``: four ranks, two per node,
    with ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``NODE_RANK`` as Azure ML's distributed training guide lists
    them; every other rank reaches rank 0 over ``MASTER_ADDR:MASTER_PORT``; all write into the shared output."""
    name = unique("torch")
    ml.jobs.create_or_update(
        command(
            name=name,
            code=str(src),
            command="python ranks.py ${{outputs.ranks}}",
            environment=ENVIRONMENT,
            compute=cluster,
            instance_count=2,
            distribution={"type": "pytorch", "process_count_per_instance": 2},
            outputs={"ranks": Output(type="uri_folder")},
        )
    )

    job = finished(ml, name)

    assert job.status == "Completed"
    seen = [json.loads(blob_text(blobs, ml, f"azureml/{name}/ranks/rank{rank}.json")) for rank in range(4)]
    assert [(s["RANK"], s["WORLD_SIZE"], s["LOCAL_RANK"], s["NODE_RANK"]) for s in seen] == [
        (str(rank), "4", str(rank % 2), str(rank // 2)) for rank in range(4)
    ]
    assert seen[0]["peers"] == [1, 2, 3]


def test_two_by_two_mpi_job_ranks_see_their_environment(
    ml: MLClient, cluster: str, src: Path, blobs: BlobServiceClient
) -> None:
    """``distribution=MpiDistribution(process_count_per_instance=2)`` on 2 nodes: every process sees
    ``OMPI_COMM_WORLD_RANK``/``SIZE``/``LOCAL_RANK`` as Open MPI sets them for Azure ML's launcher (the
    distributed training guide)."""
    name = unique("mpi")
    ml.jobs.create_or_update(
        command(
            name=name,
            code=str(src),
            command="python mpi.py ${{outputs.ranks}}",
            environment=ENVIRONMENT,
            compute=cluster,
            instance_count=2,
            distribution={"type": "mpi", "process_count_per_instance": 2},
            outputs={"ranks": Output(type="uri_folder")},
        )
    )

    assert finished(ml, name).status == "Completed"
    seen = [json.loads(blob_text(blobs, ml, f"azureml/{name}/ranks/rank{rank}.json")) for rank in range(4)]
    assert [(s["OMPI_COMM_WORLD_RANK"], s["OMPI_COMM_WORLD_SIZE"], s["OMPI_COMM_WORLD_LOCAL_RANK"]) for s in seen] == [
        (str(rank), "4", str(rank % 2)) for rank in range(4)
    ]


def test_unknown_compute_is_refused(ml: MLClient, src: Path) -> None:
    """A job naming a compute the workspace does not have is refused at submission (the emulator's 404
    ``UserError`` naming the compute; no public recording of Azure's wording was found)."""
    with pytest.raises(HttpResponseError) as raised:
        ml.jobs.create_or_update(
            command(code=str(src), command="python train.py", environment=ENVIRONMENT, compute="no-such-cluster")
        )
    assert raised.value.status_code == 404
    assert raised.value.error is not None
    assert raised.value.error.code == "UserError"
    assert "no-such-cluster" in str(raised.value.message)


def test_more_nodes_than_max_node_count_is_refused(ml: MLClient, cluster: str, src: Path) -> None:
    """``instance_count`` 3 on a cluster of at most 2 nodes: refused at submission with 400 ``UserError`` naming
    ``maxNodeCount`` (the emulator's wording)."""
    with pytest.raises(HttpResponseError) as raised:
        ml.jobs.create_or_update(
            command(
                code=str(src), command="python train.py", environment=ENVIRONMENT, compute=cluster, instance_count=3
            )
        )
    assert raised.value.status_code == 400
    assert "maxNodeCount" in str(raised.value.message)
    assert raised.value.error is not None
    assert raised.value.error.code == "UserError"


def test_timeout_cancels_the_job(ml: MLClient, cluster: str, src: Path, tmp_path: Path) -> None:
    """``set_limits(timeout=2)`` reaches the service as ``limits.timeout`` "PT2S" (``examples/Job/CommandJob/
    get.json``: an ISO 8601 duration); azure-ai-ml's ``CommandJobLimits``: "the maximum run duration, in seconds,
    after which the job will be cancelled": the endless script is killed and the job ends ``Canceled``. The
    timeout is the user process's own real time: the run needs no other clock to end."""
    probe = tmp_path / "probe"
    probe.mkdir()
    name = unique("timeout")
    job = command(
        name=name,
        code=str(src),
        command="python wait.py",
        environment=ENVIRONMENT,
        compute=cluster,
        environment_variables={"PROBE": str(probe)},
    )
    job.set_limits(timeout=2)
    ml.jobs.create_or_update(job)

    assert finished(ml, name).status == "Canceled"
    assert (probe / "started").exists()  # it did run, and was stopped


def test_a_compute_that_is_not_an_aml_compute_is_refused(ml: MLClient, azure_ml: EmulatorProcess, src: Path) -> None:
    """A job on an attached Batch compute (``computeType: Batch``, attached as the operator's BatchCompute does):
    refused at submission with 400 ``UserError`` (the emulator's wording: command jobs run on AmlCompute here)."""
    name = unique("batch")
    ws = f"/subscriptions/{DEFAULT_SUBSCRIPTION}/resourceGroups/{DEFAULT_RESOURCE_GROUP}"
    attach = {
        "computeType": "Batch",
        "resourceId": f"{ws}/providers/Microsoft.Batch/batchAccounts/{DEFAULT_BATCH_ACCOUNT}",
    }
    path = f"{ws}/providers/Microsoft.MachineLearningServices/workspaces/{DEFAULT_WORKSPACE}/computes/{name}"
    status, body = azure_ml.arm("PUT", path, {"location": DEFAULT_LOCATION, "properties": attach})
    assert status == 201, body

    with pytest.raises(HttpResponseError) as raised:
        ml.jobs.create_or_update(
            command(code=str(src), command="python train.py", environment=ENVIRONMENT, compute=name)
        )
    assert raised.value.status_code == 400
    assert raised.value.error is not None
    assert raised.value.error.code == "UserError"
    assert "not an AmlCompute" in str(raised.value.message)


def _details_reads(azure_ml: EmulatorProcess, job: str) -> int:
    """How many run-history ``details`` reads of ``job`` the emulator has served (its recent calls)."""
    recent = azure_ml.control("GET", "/stats")["recent"]
    return sum(1 for call in recent if call["path"].endswith(f"/runs/{job}/details"))


def test_stream_prints_the_user_log_and_raises_on_failure(
    ml: MLClient,
    azure_ml: EmulatorProcess,
    cluster: str,
    src: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``jobs.stream`` (the workspace's discovery document, then run history's ``runs/{id}/details`` polled until
    the run ends, ``logFiles`` downloaded; ``ml/history.py``): a job that runs until released prints its
    ``user_logs/std_log.txt`` and its summary; a failing one raises azure-ai-ml's ``JobException`` carrying the
    run's error (``UserError``: "Execution failed. User process 'python' exited with status code 3 ...", the
    wording ``ml/execution.py`` documents)."""
    probe = tmp_path / "probe"
    probe.mkdir()
    (src / "released.py").write_text(
        "import os, pathlib, time\n"
        "probe = pathlib.Path(os.environ['PROBE'])\n"
        "(probe / 'started').write_text('yes')\n"
        "while not (probe / 'go').exists():\n"
        "    time.sleep(0.05)\n"
        "print('streamed line')\n"
    )
    name = unique("stream")
    _start_and_wait(ml, name, src, "python released.py", cluster, probe)
    # The script is released only once stream has read the run as running: it then polls until the run ends
    # and prints the log it finds (a run already over at stream's first read prints no log, on Azure too).
    streaming = threading.Thread(target=ml.jobs.stream, args=(name,), daemon=True)
    streaming.start()
    deadline = time.monotonic() + WITHIN
    while _details_reads(azure_ml, name) == 0:
        assert time.monotonic() < deadline, "stream never read the run"
        time.sleep(0.1)
    (probe / "go").write_text("go")
    streaming.join(WITHIN)
    assert not streaming.is_alive(), "stream did not return once the job ended"
    printed = capsys.readouterr().out
    assert f"RunId: {name}" in printed
    assert "streamed line" in printed
    assert "Execution Summary" in printed

    failing = unique("stream-fail")
    ml.jobs.create_or_update(
        command(name=failing, code=str(src), command="python fail.py", environment=ENVIRONMENT, compute=cluster)
    )
    with pytest.raises(JobException) as raised:
        ml.jobs.stream(failing)
    assert "UserError" in str(raised.value)
    assert "exited with status code 3" in str(raised.value)
