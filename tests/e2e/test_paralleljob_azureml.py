"""ParallelJob on an AmlCompute, end to end (issue 18, point 1): the real apiserver, the operator process, the
emulator's Azure ML (``--azurite``: its workspace's default datastore is Azurite over HTTPS) whose parallel
runtime really runs the entry script on the cluster's nodes, reached through azure-ai-ml's own ``MLClient``.

The seed's example is the one tests/e2e/test_paralleljob_seed.py runs on a BatchCompute (same script, data and
rows: tests/support/seed.py), with its inputs on ``azureml://datastores/workspaceblobstore/paths/...``.
Evidence for what Azure ML answers is cited in the emulator (ml/jobs.py, ml/pipelines.py, ml/parallel.py: "How to
use parallel job in pipeline", the ParallelRunStep performance tuning guide's ``processed_mini-batches.csv``, the
threshold semantics "higher than this threshold ... marked as failed"); the AmlCompute's scale-up for a job and
scale-down after ``nodeIdleTimeBeforeScaleDown`` as tests/e2e/test_amlcompute_jobs.py cites it. The emulator's
clock runs 60x. Scripts that must run until the test says so wait for a file of the test's (``PROBE``): the
emulator's nodes are processes of this machine.
"""

from __future__ import annotations

import signal
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from azure.ai.ml import MLClient
from azure.storage.blob import BlobServiceClient

import amlops_testbed as testbed
from amlops.azure.ml_jobs import status_of
from amlops_emulator.azurite import DEVSTORE_KEY
from amlops_emulator.identity import DEFAULT_PRINCIPAL
from tests.support.jobs import blobstore, finished_job
from tests.support.mlclient import CURRENT_CLOUD, workspace_client
from tests.support.mlclient import operator_env as ml_operator_env
from tests.support.objects import apply, condition, wait_condition, wait_for, wait_gone
from tests.support.processes import EmulatorProcess, StartAzure, StartOperator
from tests.support.seed import CONDA_FILE, IRIS_CSV, ITEMS, MLTABLE, MODEL, ROWS, SCORE_SCRIPT

from .test_amlcompute import compute_name
from .test_amlcompute import manifest as aml_manifest

pytestmark = pytest.mark.e2e

STORE = "azureml://datastores/workspaceblobstore/paths"
CREDENTIALS = "aml-sp"
# The seed's script, but run() first waits for $PROBE/go (written by the test), saying it started.
WAITING_SCORE = SCORE_SCRIPT.replace(
    "def run(input_data):",
    textwrap.dedent(
        """\
        def run(input_data):
            import os, time
            probe = pathlib.Path(os.environ["PROBE"])
            (probe / "started").write_text("yes")
            while not (probe / "go").exists():
                time.sleep(0.05)"""
    ),
)
# The seed's script, but each mini-batch's first run() raises (a marker per mini-batch in $PROBE): every one is
# retried once and then succeeds.
RETRYING_SCORE = SCORE_SCRIPT.replace(
    "def run(input_data):",
    textwrap.dedent(
        """\
        def run(input_data):
            import os
            rows = input_data.to_dict("records") if hasattr(input_data, "to_dict") else input_data
            marker = pathlib.Path(os.environ["PROBE"]) / f"tried-{rows[0]['id']}"
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                pass
            else:
                raise RuntimeError("the first try of this mini-batch fails")"""
    ),
)
# The seed's script, but run() never returns within retrySettings.timeout.
HANGING_SCORE = SCORE_SCRIPT.replace(
    "def run(input_data):",
    "def run(input_data):\n    import time\n    time.sleep(600)",
)
# The seed's script, but only the first mini-batch to start (whichever process creates $PROBE/first) returns at
# once; every other waits for $PROBE/go: the job is held with exactly one mini-batch done.
STEPPING_SCORE = SCORE_SCRIPT.replace(
    "def run(input_data):",
    textwrap.dedent(
        """\
        def run(input_data):
            import os, time
            probe = pathlib.Path(os.environ["PROBE"])
            try:
                os.close(os.open(probe / "first", os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                while not (probe / "go").exists():
                    time.sleep(0.05)"""
    ),
)
# The seed's script, but rows whose id is in $BAD return no result: each is a failed item (Azure ML counts the
# items run() returned fewer results for as failed; ml/parallel.py).
FAILING_SCORE = SCORE_SCRIPT.replace(
    "    return [",
    "    import os\n    bad = set(os.environ['BAD'].split(','))\n"
    "    rows = [r for r in rows if str(r['id']) not in bad]\n    return [",
)


@dataclass
class AmlBed:
    k8s: testbed.Testbed
    ns: str
    azure: EmulatorProcess
    ml: MLClient
    blobs: BlobServiceClient
    container: str
    prefix: str
    probe: Path
    env: dict[str, str]
    start_operator: StartOperator
    operator: testbed.OperatorRun

    def job(self, name: str, script: str = "score.py", **spec: Any) -> None:
        body = {
            "apiVersion": "amlops.io/v1alpha1",
            "kind": "ParallelJob",
            "metadata": {"name": name},
            "spec": {
                "compute": {"name": "cpu"},
                "displayName": "Batch Score with Tabular Dataset",
                "description": "parallel component for batch score",
                "inputs": {
                    "job_data_path": {"uri": f"{STORE}/{self.prefix}/iris/", "type": "mltable"},
                    "score_model": {"uri": f"{STORE}/{self.prefix}/model/", "type": "uri_folder"},
                },
                "outputs": {"job_output_path": {"uri": f"{STORE}/{self.prefix}/out/{name}/"}},
                "inputData": "${{inputs.job_data_path}}",
                "maxConcurrencyPerInstance": 2,
                "miniBatchSize": "100",
                "miniBatchErrorThreshold": 5,
                "loggingLevel": "DEBUG",
                "errorThreshold": 5,
                "retrySettings": {"maxRetries": 2, "timeout": 60},
                "environmentVariables": {"PROBE": str(self.probe)},
                "task": {
                    "codeConfigMap": "seed-code",
                    "entryScript": script,
                    "environment": {"condaFile": "environment_parallel.yml"},
                    "programArguments": "--model ${{inputs.score_model}}",
                    "appendRowTo": "${{outputs.job_output_path}}",
                },
                **spec,
            },
        }
        apply(self.k8s, self.ns, yaml.safe_dump(body))

    def get(self, name: str) -> dict[str, Any]:
        return testbed.get_object(self.k8s, "paralleljob", name, self.ns) or {}

    def wait_phase(self, name: str, *phases: str, timeout: float = 180) -> dict[str, Any]:
        def in_phase(obj: dict[str, Any]) -> bool:
            return (obj.get("status") or {}).get("phase") in phases

        try:
            return wait_for(self.k8s, "paralleljob", name, self.ns, in_phase, what=f"{phases}", timeout=timeout)
        except Exception:
            print(self.get(name).get("status"))
            print(self.operator.output()[-8000:])
            raise

    def rows(self, name: str) -> list[str]:
        blob = self.blobs.get_blob_client(self.container, f"{self.prefix}/out/{name}/parallel_run_step.txt")
        text = blob.download_blob().readall().decode()
        return sorted(text.splitlines(), key=lambda row: int(row.split()[0]))

    def jobs_of(self, uid: str) -> dict[str, str]:
        """Every Azure ML job of the workspace whose name starts with the object's: name → status."""
        return {str(j.name): status_of(j) for j in self.ml.jobs.list() if str(j.name).startswith(f"pj-{uid}")}

    def restart_operator(self) -> None:
        self.operator.stop(signal.SIGKILL)
        with pytest.MonkeyPatch.context() as patch:  # the test's MLClient's cloud is not the operator's
            patch.delenv(CURRENT_CLOUD, raising=False)
            self.operator = self.start_operator(self.ns, extra_env=self.env)


def counts(obj: dict[str, Any]) -> tuple[int | None, int | None]:
    """The AmlCompute's (currentNodeCount, running nodes) as its status says."""
    status = obj.get("status") or {}
    return status.get("currentNodeCount"), (status.get("nodeStateCounts") or {}).get("runningNodeCount")


@pytest.fixture
def bed(
    k8s: testbed.Testbed,
    namespace: str,
    start_operator: StartOperator,
    start_azure: StartAzure,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[AmlBed]:
    """An emulator with Azurite, the operator, a Ready AmlCompute ``cpu`` (0..2 nodes) acting with a credentials
    Secret's service principal (azure-ai-ml needs a JWT for Azure ML: the operator's fixed test token is none), the
    seed's code in a ConfigMap, its data on the workspace's default datastore."""
    azure = start_azure(60.0, "--azurite")
    env = {**azure.operator_env(), **ml_operator_env(azure.run.endpoints)}
    operator = start_operator(namespace, extra_env=env)
    k8s.kubectl(
        "create", "secret", "generic", CREDENTIALS, "-n", namespace,
        f"--from-literal=AZURE_TENANT_ID={DEFAULT_PRINCIPAL.tenant_id}",
        f"--from-literal=AZURE_CLIENT_ID={DEFAULT_PRINCIPAL.client_id}",
        f"--from-literal=AZURE_CLIENT_SECRET={DEFAULT_PRINCIPAL.client_secret}",
    )  # fmt: skip
    code = tmp_path / "code"
    code.mkdir()
    scripts = {
        "score.py": SCORE_SCRIPT,
        "waiting.py": WAITING_SCORE,
        "failing.py": FAILING_SCORE,
        "stepping.py": STEPPING_SCORE,
        "retrying.py": RETRYING_SCORE,
        "hanging.py": HANGING_SCORE,
    }
    for name, text in {**scripts, "environment_parallel.yml": CONDA_FILE}.items():
        (code / name).write_text(text)
    k8s.kubectl("create", "configmap", "seed-code", "-n", namespace, f"--from-file={code}")
    settings = {"minNodeCount": 0, "maxNodeCount": 2, "nodeIdleTimeBeforeScaleDown": 120}
    manifest = aml_manifest(
        "cpu", compute_name(), scaleSettings=settings, credentials={"secretRef": {"name": CREDENTIALS}}
    )
    apply(k8s, namespace, manifest)
    wait_condition(k8s, "amlcompute", "cpu", namespace, "Ready", timeout=120)

    ml = workspace_client(azure, monkeypatch)
    endpoints = azure.run.endpoints
    storage = endpoints["storage"]
    credential = {"account_name": storage["accountName"], "account_key": DEVSTORE_KEY}
    prefix = f"pj-{uuid.uuid4().hex[:8]}"
    probe = tmp_path / "probe"
    probe.mkdir()
    with BlobServiceClient(storage["serviceUrl"], credential=credential, connection_verify=azure.ca_file) as blobs:
        container = blobstore(ml)
        data = blobs.get_container_client(container)
        data.upload_blob(f"{prefix}/iris/iris.csv", IRIS_CSV.encode(), overwrite=True)
        data.upload_blob(f"{prefix}/iris/MLTable", MLTABLE.encode(), overwrite=True)
        data.upload_blob(f"{prefix}/model/model.txt", MODEL.encode(), overwrite=True)
        yield AmlBed(k8s, namespace, azure, ml, blobs, container, prefix, probe, env, start_operator, operator)


def test_the_seed_on_an_amlcompute_completes_with_the_batch_rows_and_status_and_the_cluster_scales(
    bed: AmlBed,
) -> None:
    """The seed's tabular scoring with a model input on an AmlCompute with 0 nodes: one Azure ML pipeline job,
    the rows and status fields of the same example on a BatchCompute (test_paralleljob_seed.py); the cluster
    scales up for it and back down to 0 after, in the AmlCompute's status."""
    wait_for(bed.k8s, "amlcompute", "cpu", bed.ns, lambda o: counts(o)[0] == 0, what="0 nodes")
    bed.job("seed")
    wait_for(bed.k8s, "amlcompute", "cpu", bed.ns, lambda o: (counts(o)[0] or 0) >= 1,
             what="scaled up for the job", timeout=180)  # fmt: skip
    obj = bed.wait_phase("seed", "Complete", "Failed")

    status, uid = obj["status"], obj["metadata"]["uid"]
    assert status["phase"] == "Complete", status
    assert condition(obj, "Complete")["status"] == "True"
    assert condition(obj, "Ready")["status"] == "True"
    assert condition(obj, "Running")["status"] == "False"
    assert bed.rows("seed") == ROWS
    assert status["items"] == {"processed": ITEMS, "failed": 0}
    total = status["miniBatches"]["total"]
    assert total > 1, "100 bytes of rows per mini-batch cut 40 rows into several"
    assert status["miniBatches"] == {"total": total, "pending": 0, "running": 0, "succeeded": total, "failed": 0,
                                     "retried": 0}  # fmt: skip
    assert (status["progress"], status["progressPercentage"]) == (f"{total}/{total}", 100)
    assert status["estimatedRemainingSeconds"] == 0
    assert status.get("failedMiniBatches") is None
    assert status["output"] == f"{STORE}/{bed.prefix}/out/seed/parallel_run_step.txt"
    assert (status["backend"], status["azureJobName"]) == ("AzureML", f"pj-{uid}")
    assert status["studioUrl"]
    assert status["startTime"]
    assert status["completionTime"]
    assert status["resourcesReleased"] is True
    assert "jobId" not in status, "no Batch job"
    job = bed.ml.jobs.get(f"pj-{uid}")
    assert (job.status, job.tags["amlops.io-owner"]) == ("Completed", f"{bed.ns}.seed.{uid}")
    assert job.display_name == "Batch Score with Tabular Dataset"
    assert bed.jobs_of(uid) == {f"pj-{uid}": "Completed"}

    wait_for(bed.k8s, "amlcompute", "cpu", bed.ns, lambda o: counts(o) == (0, 0),
             what="scaled back down to 0", timeout=180)  # fmt: skip


def test_thresholds_fail_above_and_complete_at_the_limit_as_azure_ml_says(bed: AmlBed) -> None:
    """Three rows get no result: three failed items. errorThreshold 2 (N-1): Failed with Azure ML's error
    (UserError, naming error_threshold); errorThreshold 3 (N): Complete, the three items counted as failed. A
    third job with ttlSecondsAfterFinished 0 deletes itself once Complete, as on Batch; its Azure ML job stays."""
    bad = {"BAD": "3,17,31", "PROBE": str(bed.probe)}
    bed.job("over", script="failing.py", errorThreshold=2, miniBatchErrorThreshold=-1, environmentVariables=bad)
    bed.job("at", script="failing.py", errorThreshold=3, miniBatchErrorThreshold=-1, environmentVariables=bad)
    bed.job("brief", ttlSecondsAfterFinished=0)
    uid = bed.get("brief")["metadata"]["uid"]

    over = bed.wait_phase("over", "Complete", "Failed")
    at = bed.wait_phase("at", "Complete", "Failed")

    assert over["status"]["phase"] == "Failed", over["status"]
    assert condition(over, "Failed")["reason"] == "UserError"
    assert "error_threshold (2)" in condition(over, "Failed")["message"]
    assert condition(over, "Stalled")["reason"] == "UserError"
    assert at["status"]["phase"] == "Complete", at["status"]
    assert at["status"]["items"] == {"processed": ITEMS - 3, "failed": 3}
    assert at["status"]["failedMiniBatches"]
    assert len(bed.rows("at")) == ITEMS - 3
    wait_gone(bed.k8s, "paralleljob", "brief", bed.ns, timeout=180)
    assert bed.jobs_of(uid) == {f"pj-{uid}": "Completed"}
    assert bed.rows("brief") == ROWS


def test_retries_and_the_run_timeout_mean_what_azure_ml_says(bed: AmlBed) -> None:
    """retrySettings reach Azure ML's parallel runtime: a run() that raises once per mini-batch is retried and the
    job completes with every row (maxRetries 2); a run() that outlives retrySettings.timeout fails its mini-batch
    on every try, and with miniBatchErrorThreshold 0 the job fails, with Azure ML's error."""
    bed.job("retried", script="retrying.py", retrySettings={"maxRetries": 2, "timeout": 60})
    bed.job("hung", script="hanging.py", miniBatchSize="100000", miniBatchErrorThreshold=0,
            retrySettings={"maxRetries": 1, "timeout": 2})  # fmt: skip

    retried = bed.wait_phase("retried", "Complete", "Failed")
    hung = bed.wait_phase("hung", "Complete", "Failed")

    assert retried["status"]["phase"] == "Complete", retried["status"]
    assert bed.rows("retried") == ROWS
    total = retried["status"]["miniBatches"]["total"]
    assert retried["status"]["miniBatches"]["retried"] == total, "each mini-batch was tried twice"
    assert hung["status"]["phase"] == "Failed", hung["status"]
    assert hung["status"]["miniBatches"]["failed"] == hung["status"]["miniBatches"]["total"] == 1
    assert condition(hung, "Failed")["reason"] == "UserError"


def test_suspend_cancels_the_azure_ml_job_and_resume_submits_a_new_one_that_completes(bed: AmlBed) -> None:
    """A running job suspended: its Azure ML job is canceled; resumed: a second job (pj-<uid>-1) runs every
    mini-batch again. A job created suspended submits nothing until it is resumed (as a batch/v1 Job)."""
    bed.job("held", suspend=True)
    bed.job("pause", script="waiting.py")
    testbed.eventually(lambda: (bed.probe / "started").exists(), timeout=180, what="run() started")
    uid = bed.get("pause")["metadata"]["uid"]
    held = bed.wait_phase("held", "Suspended")
    assert bed.jobs_of(held["metadata"]["uid"]) == {}, "nothing submitted while suspended"

    bed.k8s.kubectl("patch", "paralleljob/pause", "-n", bed.ns, "--type=merge", "-p", '{"spec":{"suspend":true}}')
    suspended = bed.wait_phase("pause", "Suspended")
    assert condition(suspended, "Suspended")["status"] == "True"
    assert bed.jobs_of(uid) == {f"pj-{uid}": "Canceled"}

    (bed.probe / "go").write_text("go")
    bed.k8s.kubectl("patch", "paralleljob/pause", "-n", bed.ns, "--type=merge", "-p", '{"spec":{"suspend":false}}')
    done = bed.wait_phase("pause", "Complete", "Failed")

    assert done["status"]["phase"] == "Complete", done["status"]
    assert (done["status"]["attempt"], done["status"]["azureJobName"]) == (1, f"pj-{uid}-1")
    assert bed.rows("pause") == ROWS
    assert bed.jobs_of(uid) == {f"pj-{uid}": "Canceled", f"pj-{uid}-1": "Completed"}
    bed.k8s.kubectl("patch", "paralleljob/held", "-n", bed.ns, "--type=merge", "-p", '{"spec":{"suspend":false}}')
    resumed = bed.wait_phase("held", "Complete", "Failed")
    assert resumed["status"]["phase"] == "Complete", resumed["status"]
    assert bed.jobs_of(held["metadata"]["uid"]) == {f"pj-{held['metadata']['uid']}": "Completed"}


def test_deleting_a_running_job_cancels_it_in_azure_ml(bed: AmlBed) -> None:
    bed.job("doomed", script="waiting.py")
    testbed.eventually(lambda: (bed.probe / "started").exists(), timeout=180, what="run() started")
    uid = bed.get("doomed")["metadata"]["uid"]

    bed.k8s.kubectl("delete", "paralleljob/doomed", "-n", bed.ns, "--wait=false")
    wait_gone(bed.k8s, "paralleljob", "doomed", bed.ns, timeout=120)

    assert finished_job(bed.ml, f"pj-{uid}").status == "Canceled"


def test_an_amlcompute_is_deleted_only_after_the_parallel_job_running_on_it(bed: AmlBed) -> None:
    """Deleting the cluster first (a namespace deletion deletes both at once): it waits for the ParallelJob, which
    cancels its Azure ML job with the AmlCompute's credentials, then goes."""
    bed.job("riding", script="waiting.py")
    testbed.eventually(lambda: (bed.probe / "started").exists(), timeout=180, what="run() started")
    uid = bed.get("riding")["metadata"]["uid"]

    bed.k8s.kubectl("delete", "amlcompute/cpu", "-n", bed.ns, "--wait=false")
    waiting = wait_condition(bed.k8s, "amlcompute", "cpu", bed.ns, "Reconciling")
    assert condition(waiting, "Reconciling")["reason"] == "WaitingForDependents"
    assert "ParallelJob riding" in condition(waiting, "Reconciling")["message"]

    bed.k8s.kubectl("delete", "paralleljob/riding", "-n", bed.ns, "--wait=false")
    wait_gone(bed.k8s, "paralleljob", "riding", bed.ns, timeout=120)
    wait_gone(bed.k8s, "amlcompute", "cpu", bed.ns, timeout=120)
    assert finished_job(bed.ml, f"pj-{uid}").status == "Canceled"


def test_a_restarted_operator_finds_the_job_it_submitted_before_it_was_killed(bed: AmlBed) -> None:
    """SIGKILL as soon as Azure ML has the job (its status may not be written yet): the restarted operator finds
    the job by its uid-derived name; exactly one job of that name prefix exists, and it runs to Complete."""
    bed.job("crash", script="waiting.py")
    uid = bed.get("crash")["metadata"]["uid"]
    testbed.eventually(lambda: bool(bed.jobs_of(uid)), timeout=120, what="the job submitted")
    bed.restart_operator()

    (bed.probe / "go").write_text("go")
    done = bed.wait_phase("crash", "Complete", "Failed")

    assert done["status"]["phase"] == "Complete", done["status"]
    assert done["status"]["azureJobName"] == f"pj-{uid}"
    assert bed.jobs_of(uid) == {f"pj-{uid}": "Completed"}
    assert bed.rows("crash") == ROWS


def midway(obj: dict[str, Any]) -> bool:
    """Running with some but not all mini-batches done, as the status says."""
    status = obj.get("status") or {}
    done, total = (status.get("miniBatches") or {}).get("succeeded", 0), (status.get("miniBatches") or {}).get("total")
    return status.get("phase") == "Running" and bool(total) and 0 < done < total


def assert_midway(obj: dict[str, Any]) -> None:
    status = obj["status"]
    total = status["miniBatches"]["total"]
    assert total > 2, "100 bytes of rows per mini-batch cut 40 rows into several"
    assert status["miniBatches"]["succeeded"] == 1, "one mini-batch returned, the others wait for the test"
    assert status["miniBatches"]["pending"] == total - 1
    assert status["progress"] == f"1/{total}"
    assert 0 < status["progressPercentage"] < 100
    assert status["estimatedRemainingSeconds"] is not None
    assert 0 < status["items"]["processed"] < ITEMS
    assert status.get("completionTime") is None


def assert_seed_complete(bed: AmlBed, obj: dict[str, Any], name: str) -> None:
    status = obj["status"]
    total = status["miniBatches"]["total"]
    assert status["phase"] == "Complete", status
    assert bed.rows(name) == ROWS
    assert status["items"] == {"processed": ITEMS, "failed": 0}
    assert status["miniBatches"] == {"total": total, "pending": 0, "running": 0, "succeeded": total, "failed": 0,
                                     "retried": 0}  # fmt: skip
    assert (status["progress"], status["progressPercentage"]) == (f"{total}/{total}", 100)
    assert status["estimatedRemainingSeconds"] == 0


def test_progress_moves_while_the_job_runs(bed: AmlBed) -> None:
    """The parallel runtime uploads its job report and progress overview as mini-batches settle (Troubleshooting
    ParallelRunStep: "How to check job progress?", the overview's mini-batches "created so far" and "processed so
    far"; cited in the emulator's ml/parallel.py): with one mini-batch of several done and the others held, the
    ParallelJob is Running with progress 1/N (0 < percentage < 100, a remaining-time estimate), as on Batch; then
    Complete with N/N."""
    bed.job("steps", script="stepping.py")
    running = wait_for(bed.k8s, "paralleljob", "steps", bed.ns, midway, what="progress between 0/N and N/N",
                       timeout=240)  # fmt: skip
    assert_midway(running)

    (bed.probe / "go").write_text("go")
    done = bed.wait_phase("steps", "Complete", "Failed")
    assert_seed_complete(bed, done, "steps")
    assert done["status"]["miniBatches"]["total"] == running["status"]["miniBatches"]["total"]


def test_an_operator_killed_mid_run_follows_the_same_job_to_complete(bed: AmlBed) -> None:
    """SIGKILL while the job runs (one mini-batch done, the others held): the restarted operator finds the same
    Azure ML job by its uid-derived name (exactly one pj-<uid> job in the workspace) and follows it to Complete
    with the seed's rows and the Batch status fields."""
    bed.job("midrun", script="stepping.py")
    running = wait_for(bed.k8s, "paralleljob", "midrun", bed.ns, midway, what="progress between 0/N and N/N",
                       timeout=240)  # fmt: skip
    uid = running["metadata"]["uid"]
    bed.restart_operator()

    (bed.probe / "go").write_text("go")
    done = bed.wait_phase("midrun", "Complete", "Failed")

    assert_seed_complete(bed, done, "midrun")
    assert done["status"]["azureJobName"] == f"pj-{uid}"
    assert done["status"]["startTime"] == running["status"]["startTime"], "the same run, not a new one"
    assert bed.jobs_of(uid) == {f"pj-{uid}": "Completed"}


def test_active_deadline_cancels_the_azure_ml_job_and_fails_as_on_batch(bed: AmlBed) -> None:
    """activeDeadlineSeconds passes while run() waits: the job is canceled in Azure ML and the ParallelJob is
    Failed with the reason the Batch backend uses (DeadlineExceeded)."""
    bed.job("late", script="waiting.py", activeDeadlineSeconds=5)
    failed = bed.wait_phase("late", "Complete", "Failed")
    uid = failed["metadata"]["uid"]

    assert failed["status"]["phase"] == "Failed", failed["status"]
    assert condition(failed, "Failed")["reason"] == "DeadlineExceeded"
    assert failed["status"]["completionTime"]
    assert finished_job(bed.ml, f"pj-{uid}").status == "Canceled"
