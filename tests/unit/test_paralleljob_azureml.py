"""ParallelJob on an AmlCompute, the pure parts: which backend a job runs on (and that the choice sticks), the
Batch-only fields refused there, and Azure ML's job status → the phase and the one write (the same contract and
reasons as the Batch backend's ``paralleljob_map.decide``)."""

from __future__ import annotations

from typing import Any

import pytest

from amlops.api.paralleljob import ParallelJobSpec
from amlops.external import paralleljob_azureml as azml
from amlops.external.backends import AZURE_ML, BATCH, Backend, command_jobs_on, parallel_jobs_on
from amlops.external.paralleljob_backend import REASON_AMBIGUOUS_COMPUTE, choose
from amlops.external.paralleljob_map import Counts
from amlops.reconcile.errors import TerminalError

pytestmark = pytest.mark.unit


def spec(**overrides: Any) -> ParallelJobSpec:
    return ParallelJobSpec.model_validate(
        {
            "compute": {"name": "cpu", **overrides.pop("compute", {})},
            "inputs": {"data": {"uri": "azureml://datastores/workspaceblobstore/paths/in/"}},
            "outputs": {"scores": {"uri": "azureml://datastores/workspaceblobstore/paths/out/"}},
            "inputData": "${{inputs.data}}",
            "task": {"codeConfigMap": "code", "entryScript": "score.py", "appendRowTo": "${{outputs.scores}}"},
            **overrides,
        }
    )


@pytest.mark.parametrize(
    ("status", "aml", "batch", "expected"),
    [
        pytest.param({}, True, False, AZURE_ML, id="an AmlCompute of that name: Azure ML"),
        pytest.param({}, False, True, BATCH, id="a BatchCompute of that name: Batch"),
        pytest.param({}, False, False, None, id="neither yet: no backend (WaitingForCompute)"),
        pytest.param({"backend": "Batch"}, True, False, BATCH, id="recorded Batch: a later AmlCompute changes nothing"),
        pytest.param(
            {"backend": "AzureML"}, False, True, AZURE_ML, id="recorded AzureML: a later BatchCompute neither"
        ),
        pytest.param({"backend": "AzureML"}, False, False, AZURE_ML, id="recorded: the compute gone, still AzureML"),
        pytest.param({"jobId": "pj-1"}, True, False, BATCH, id="a Batch job from before backend was recorded"),
        pytest.param({"azureJobName": "pj-1"}, False, True, AZURE_ML, id="an Azure ML job name without backend"),
        pytest.param({"backend": "Batch"}, True, True, BATCH, id="recorded: both kinds now, no ambiguity"),
    ],
)
def test_the_backend_is_the_kind_of_the_compute_and_sticks_once_recorded(
    status: dict[str, Any], aml: bool, batch: bool, expected: str | None
) -> None:
    assert choose(status, "cpu", aml, batch) == expected


def test_both_kinds_of_the_same_name_and_nothing_recorded_is_refused_not_guessed() -> None:
    with pytest.raises(TerminalError) as refused:
        choose({}, "cpu", True, True)
    assert refused.value.reason == REASON_AMBIGUOUS_COMPUTE
    assert "cpu" in refused.value.message


@pytest.mark.parametrize(
    ("overrides", "fields"),
    [
        pytest.param({}, [], id="nothing Batch-only"),
        pytest.param({"compute": {"poolId": "scoring"}}, ["compute.poolId"], id="a Batch pool"),
        pytest.param({"compute": {"lowPriority": True}}, ["compute.lowPriority"], id="Spot nodes of a job's own pool"),
        pytest.param(
            {"compute": {"instanceType": "STANDARD_D4S_V3"}},
            ["compute.instanceType"],
            id="a Batch pool's VM size (resources.instanceType is Azure ML's)",
        ),
        pytest.param({"compute": {"lowPriority": False}}, [], id="lowPriority false is the default: nothing to honour"),
        pytest.param(
            {"storageCredentials": {"secretRef": {"name": "storage"}}},
            ["storageCredentials"],
            id="a storage account of the spec's (Azure ML reads the workspace's datastores)",
        ),
        pytest.param(
            {"compute": {"poolId": "p", "lowPriority": True}, "storageCredentials": {"secretRef": {"name": "s"}}},
            ["compute.poolId", "compute.lowPriority", "storageCredentials"],
            id="every one named",
        ),
    ],
)
def test_batch_only_fields_are_named(overrides: dict[str, Any], fields: list[str]) -> None:
    assert azml.batch_only_fields(spec(**overrides)) == fields


def test_batch_only_fields_are_refused_as_invalid_spec_naming_them() -> None:
    azml.refuse_batch_only(spec(), "cpu")
    with pytest.raises(TerminalError) as refused:
        azml.refuse_batch_only(spec(compute={"poolId": "scoring"}), "cpu")
    assert refused.value.reason == "InvalidSpec"
    assert "compute.poolId" in refused.value.message
    assert "cpu is an AmlCompute" in refused.value.message


DONE = Counts(total=4, succeeded=3, failed=1, items_processed=30, items_failed=2, failed_indexes=(2,))


@pytest.mark.parametrize(
    ("facts", "phase", "action", "reason"),
    [
        pytest.param(azml.Facts("Queued"), "Running", None, "Running", id="queued: Running, wait"),
        pytest.param(azml.Facts("Running"), "Running", None, "Running", id="running: wait"),
        pytest.param(azml.Facts("Completed", counts=DONE), "Complete", None, "Succeeded", id="completed"),
        pytest.param(
            azml.Facts("Failed", error=("UserError", "The number of failed mini-batches (2) exceeded ...")),
            "Failed",
            None,
            "UserError",
            id="failed: Azure's error code is the reason (a threshold breach as Azure ML says it)",
        ),
        pytest.param(azml.Facts("Failed"), "Failed", None, "JobFailed", id="failed without an error"),
        pytest.param(azml.Facts("Running", suspend=True), "Running", "suspend", "Running", id="suspend: cancel"),
        pytest.param(
            azml.Facts("CancelRequested", suspend=True), "Running", None, "Running", id="suspend: canceling, wait"
        ),
        pytest.param(azml.Facts("Canceled", suspend=True), "Suspended", None, "Suspended", id="suspended"),
        pytest.param(
            azml.Facts("Canceled", was_suspended=True), "Running", "resume", "Running", id="resume: a new job"
        ),
        pytest.param(
            azml.Facts("Canceled"), "Failed", None, "JobCanceled", id="canceled outside amlops: Failed, not resumed"
        ),
        pytest.param(azml.Facts("NotResponding"), "Failed", None, "NotResponding", id="not responding: Failed"),
        pytest.param(
            azml.Facts("Running", elapsed=11, deadline=10), "Running", "fail", "DeadlineExceeded", id="deadline: cancel"
        ),
        pytest.param(
            azml.Facts("CancelRequested", elapsed=11, deadline=10),
            "Running",
            None,
            "DeadlineExceeded",
            id="deadline: canceling, wait",
        ),
        pytest.param(
            azml.Facts("Canceled", elapsed=11, deadline=10),
            "Failed",
            None,
            "DeadlineExceeded",
            id="deadline: canceled, Failed with the reason Batch uses",
        ),
        pytest.param(
            azml.Facts("Completed", elapsed=11, deadline=10, counts=DONE),
            "Complete",
            None,
            "Succeeded",
            id="completed before amlops saw the deadline pass: Complete stands",
        ),
        pytest.param(
            azml.Facts("Canceled", suspend=True, elapsed=11, deadline=10),
            "Failed",
            None,
            "DeadlineExceeded",
            id="suspended past the deadline: Failed, as on Batch",
        ),
    ],
)
def test_azure_mls_status_decides_the_phase_and_the_one_write(
    facts: azml.Facts, phase: str, action: str | None, reason: str
) -> None:
    decision = azml.decide(facts)
    assert (decision.phase, decision.action, decision.reason) == (phase, action, reason)


def test_the_status_has_the_batch_contract_once_the_report_gives_a_total() -> None:
    """Counts from the parallel runtime's report, finished or running (it is uploaded as mini-batches settle); a
    job whose report gave no total yet (not started, a new attempt) has only its phase."""
    complete = azml.status_fields(azml.decide(azml.Facts("Completed", counts=DONE)), 12.0)
    assert complete["miniBatches"] == {"total": 4, "pending": 0, "running": 0, "succeeded": 3, "failed": 1,
                                       "retried": 0}  # fmt: skip
    assert complete["items"] == {"processed": 30, "failed": 2}
    assert (complete["progress"], complete["progressPercentage"]) == ("4/4", 100)
    assert complete["estimatedRemainingSeconds"] == 0
    assert complete["failedMiniBatches"] == "2"
    unknown = azml.status_fields(azml.decide(azml.Facts("Running")), 12.0)
    assert unknown == {"phase": "Running", **dict.fromkeys(azml.COUNT_FIELDS)}
    halfway = Counts(total=4, pending=2, succeeded=2, items_processed=20)
    running = azml.status_fields(azml.decide(azml.Facts("Running", counts=halfway)), 12.0)
    assert (running["phase"], running["progress"], running["progressPercentage"]) == ("Running", "2/4", 50)
    assert running["estimatedRemainingSeconds"] == 12  # the rate so far: 2 mini-batches in 12 s, 2 left
    assert running["miniBatches"]["pending"] == 2


@pytest.mark.parametrize(
    ("read_at", "now", "due", "why"),
    [
        (None, 0.0, True, "never read: read now"),
        (10.0, 14.9, False, "read less than an interval ago: the last counts answer"),
        (10.0, 15.0, True, "an interval has passed: read again"),
    ],
)
def test_a_running_jobs_report_is_read_at_most_once_per_interval(
    read_at: float | None, now: float, due: bool, why: str
) -> None:
    assert azml.RunningProgress(read_at=read_at).due(now, 5.0) is due, why


def test_the_output_is_parallel_run_step_txt_in_the_append_row_to_output() -> None:
    assert azml.output_uri(spec()) == "azureml://datastores/workspaceblobstore/paths/out/parallel_run_step.txt"
    no_rows = spec(task={"codeConfigMap": "code", "entryScript": "score.py"})
    assert azml.output_uri(no_rows) is None


CONDA = b"name: batch\ndependencies:\n  - python=3.10\n"


@pytest.mark.parametrize(
    ("environment", "files", "expected", "reason"),
    [
        pytest.param(None, {"score.py": b""}, None, None, id="no environment: the image as it is"),
        pytest.param({"pipRequirements": ["pandas"]}, None, None, None, id="pip only: no conda file to read"),
        pytest.param({"condaFile": "env.yml"}, {"env.yml": CONDA}, CONDA, None, id="read from the ConfigMap"),
        pytest.param(
            {"condaFile": "env.yml"}, None, None, "InvalidSpec", id="task.code: amlops cannot read it, refused"
        ),
        pytest.param({"condaFile": "env.yml"}, {"other.yml": CONDA}, None, "InvalidSpec", id="not a ConfigMap key"),
        pytest.param(
            {"condaFile": "env.yml"},
            {"env.yml": b"#" * (256 * 1024 + 1)},
            None,
            "CondaFileTooLarge",
            id="larger than the Batch backend's bound too",
        ),
    ],
)
def test_the_conda_file_comes_from_the_code_config_map(
    environment: dict[str, Any] | None, files: dict[str, bytes] | None, expected: bytes | None, reason: str | None
) -> None:
    job = spec(task={"codeConfigMap": "code", "entryScript": "score.py", "environment": environment})
    if reason is None:
        assert azml.conda_file(job, files) == expected
        return
    with pytest.raises(TerminalError) as refused:
        azml.conda_file(job, files)
    assert refused.value.reason == reason


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        pytest.param(b"a: &x [1]\nb: *x\n", "CondaFileHasAliases", id="aliases are not expanded (tenant YAML)"),
        pytest.param(b"- just\n- a list\n", "InvalidSpec", id="not a mapping"),
        pytest.param(b"a: [\n", "InvalidSpec", id="not YAML"),
    ],
)
def test_a_conda_file_is_parsed_as_on_batch(text: bytes, reason: str) -> None:
    with pytest.raises(TerminalError) as refused:
        azml.conda_document("env.yml", text)
    assert refused.value.reason == reason


def _job(name: str, compute: str, **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"compute": {"name": compute}}, "status": status}


JOBS = [
    _job("aml-run", "cpu", backend="AzureML"),
    _job("batch-run", "cpu", backend="Batch"),
    _job("old-batch", "cpu", jobId="pj-1"),  # from before status.backend was recorded
    _job("pending", "cpu"),  # nothing created anywhere yet
    _job("elsewhere", "gpu", backend="AzureML"),
]


@pytest.mark.parametrize(
    ("backend", "expected"),
    [
        pytest.param(AZURE_ML, ("ParallelJob aml-run",), id="an AmlCompute waits for its Azure ML runs only"),
        pytest.param(
            BATCH,
            ("ParallelJob batch-run", "ParallelJob old-batch", "ParallelJob pending"),
            id="a BatchCompute waits for the rest that name it (a pending one may still need its account)",
        ),
    ],
)
def test_a_computes_deletion_waits_for_the_parallel_jobs_that_run_on_it(
    backend: Backend, expected: tuple[str, ...]
) -> None:
    assert parallel_jobs_on(JOBS, "cpu", backend) == expected


def test_an_amlcomputes_deletion_waits_for_the_command_jobs_that_submitted_to_it() -> None:
    jobs = [
        {"metadata": {"name": "train"}, "spec": {"compute": "cpu"}, "status": {"azureJobName": "cj-1"}},
        {"metadata": {"name": "queued"}, "spec": {"compute": "cpu"}, "status": {}},  # nothing submitted yet
        {"metadata": {"name": "other"}, "spec": {"compute": "gpu"}, "status": {"azureJobName": "cj-2"}},
    ]
    assert command_jobs_on(jobs, "cpu") == ("CommandJob train",)
