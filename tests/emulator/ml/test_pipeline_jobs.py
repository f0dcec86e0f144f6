"""Pipeline jobs through azure-ai-ml 1.35.2's real ``MLClient``: ``@pipeline`` functions of ``command`` and
``parallel`` nodes, their components registered, each node a child job on the emulator's AmlCompute.

Evidence: azure-ai-ml 1.35.2's ``_job_operations.py`` (a pipeline PUT at 2024-01-01-preview with an Azure ML token
in ``x-azureml-token``; ``jobs.list(parent_job_name=...)`` reads run history's ``runs/{id}/children``; ``jobs.get``
of a child, whose ARM body has no ``properties``, reads ``runs/{id}``), ``_component_operations.py`` (anonymous
components PUT at ``components/azureml_anonymous/versions/{hash}``), the recording ``sdk/ml/azure-ai-ml/tests/
recordings/pipeline_job/e2etests/test_pipeline_job.pyTestPipelineJobLongRunningtest_pipeline_job_get_child_run.json``
of azure-sdk-for-python (a pipeline's properties, its children's ``Run`` bodies: GUID ``runId``, ``displayName``
the node), ``examples/Job/PipelineJob/createOrUpdate.json`` of azure-rest-api-specs ``stable/2024-10-01``
(``status: NotStarted`` on create), ``JobStatus`` for the status names. The seed is the ``parallel_run_function``
example of /work/shared/seeds/002_40581eadf274a66d.txt. Where an answer is the emulator's own (how a failure
stops the other nodes, the pipeline's error wording), ml/pipelines.py says so.

The emulator's clock runs at 60x (conftest), so nodes come within seconds; user processes run in real time:
tests wait on statuses with a deadline, never on a sleep.
"""

# No ``from __future__ import annotations``: azure-ai-ml's @pipeline reads its parameters' annotations as types.
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from azure.ai.ml import Input, MLClient, Output, command, dsl
from azure.ai.ml.constants import AssetTypes
from azure.ai.ml.entities import Environment, Job, PipelineJob
from azure.ai.ml.exceptions import JobException
from azure.ai.ml.parallel import RunFunction, parallel_run_function
from azure.storage.blob import BlobServiceClient

from tests.support.jobs import ENVIRONMENT, WAIT_SCRIPT, blob_text, blobstore, finished_job, unique
from tests.support.seed import CONDA_FILE, IRIS_CSV, MLTABLE, MODEL, ROWS, SCORE_SCRIPT

pytestmark = pytest.mark.emulator

WITHIN = 180.0  # real seconds a pipeline may take on a loaded machine (two nodes one after the other)

PRODUCE = """
import pathlib, sys
out = pathlib.Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
(out / "rows.txt").write_text("a\\nb\\nc\\n")
"""
CONSUME = """
import pathlib, sys
rows = (pathlib.Path(sys.argv[1]) / "rows.txt").read_text().split()
out = pathlib.Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
(out / "count.txt").write_text(str(len(rows)))
"""
FAIL = "import sys\nprint('step failed')\nsys.exit(4)\n"
WRITE = """
import pathlib, sys
out = pathlib.Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
(out / "n.txt").write_text(sys.argv[2])
"""


@pytest.fixture
def src(tmp_path: Path) -> Path:
    folder = tmp_path / "src"
    folder.mkdir()
    for name, text in {
        "produce.py": PRODUCE,
        "consume.py": CONSUME,
        "fail.py": FAIL,
        "write.py": WRITE,
        "wait.py": WAIT_SCRIPT,
    }.items():
        (folder / name).write_text(text)
    return folder


def _pipeline(func: Callable[..., Any], **settings: Any) -> Callable[..., PipelineJob]:
    """``@dsl.pipeline(**settings)`` on ``func``, spelled so that azure-ai-ml's typed overload applies."""
    return dsl.pipeline(func, **settings)


def _named(pipeline: PipelineJob, name: str) -> PipelineJob:
    pipeline.name = name
    return pipeline


def _finished(ml: MLClient, name: str) -> Job:
    return finished_job(ml, name, WITHIN)


def _children(ml: MLClient, pipeline: str) -> dict[str, Job]:
    """The pipeline's children as azure-ai-ml lists them, by node (their ``display_name``)."""
    children = {}
    for child in ml.jobs.list(parent_job_name=pipeline):
        assert child.display_name is not None
        children[child.display_name] = child
    return children


def test_two_step_pipeline_passes_the_first_steps_output_to_the_second(
    ml: MLClient, cluster: str, src: Path, blobs: BlobServiceClient
) -> None:
    """``@pipeline`` of two ``command`` nodes, the second reading the first's ``uri_folder`` output
    (``${{parent.jobs.first.outputs.rows}}``): the second starts once the first completed and reads what it
    uploaded; the pipeline goes ``NotStarted`` (the swagger example's status on create) to ``Completed``; both
    children are listed by ``jobs.list(parent_job_name=...)`` (GUID names, ``display_name`` the node) and
    readable with ``jobs.get``; the pipeline's output is the second node's."""
    produce = command(
        code=str(src),
        command="python produce.py ${{outputs.rows}}",
        environment=ENVIRONMENT,
        outputs={"rows": Output(type="uri_folder")},
    )
    consume = command(
        code=str(src),
        command="python consume.py ${{inputs.rows}} ${{outputs.count}}",
        environment=ENVIRONMENT,
        inputs={"rows": Input(type="uri_folder")},
        outputs={"count": Output(type="uri_folder")},
    )

    def two_steps() -> dict[str, Output]:
        first = produce()
        second = consume(rows=first.outputs["rows"])
        return {"count": second.outputs["count"]}

    name = unique("two-steps")
    submitted = ml.jobs.create_or_update(_named(_pipeline(two_steps, compute=cluster)(), name))
    assert isinstance(submitted, PipelineJob)
    assert submitted.status in ("NotStarted", "Running")

    job = _finished(ml, name)

    assert isinstance(job, PipelineJob)
    assert job.status == "Completed"
    children = _children(ml, name)
    assert sorted(children) == ["first", "second"]
    assert all(c.status == "Completed" for c in children.values())
    second = children["second"].name
    assert blob_text(blobs, ml, f"azureml/{second}/count/count.txt") == "3"
    output = job.outputs["count"]
    assert not isinstance(output, str)  # a PipelineOutput, which has the Output's path
    assert output.path == f"azureml://datastores/workspaceblobstore/paths/azureml/{second}/count/"


def test_failing_node_fails_the_pipeline_and_its_readers_never_start(ml: MLClient, cluster: str, src: Path) -> None:
    """A node exiting 4: its child ``Failed``, the pipeline ``Failed``; the node reading its output is never
    made a child job (it never starts). ``jobs.stream`` of the pipeline raises its error, which names the failed
    node (the emulator's wording)."""
    failing = command(
        code=str(src),
        command="python fail.py ${{outputs.rows}}",
        environment=ENVIRONMENT,
        outputs={"rows": Output(type="uri_folder")},
    )
    reader = command(
        code=str(src),
        command="echo ${{inputs.rows}}",
        environment=ENVIRONMENT,
        inputs={"rows": Input(type="uri_folder")},
    )

    def fails() -> None:
        first = failing()
        reader(rows=first.outputs["rows"]).name = "reader"

    name = unique("fails")
    ml.jobs.create_or_update(_named(_pipeline(fails, compute=cluster)(), name))

    assert _finished(ml, name).status == "Failed"
    children = _children(ml, name)
    assert sorted(children) == ["first"]
    assert children["first"].status == "Failed"
    with pytest.raises(JobException) as raised:  # jobs.stream reads the pipeline's run details
        ml.jobs.stream(name)
    assert "Failed nodes: /first" in str(raised.value)


def test_without_continue_on_step_failure_a_failure_cancels_the_running_siblings(
    ml: MLClient, cluster: str, src: Path, tmp_path: Path
) -> None:
    """Two independent nodes start together; one fails, the other runs an endless script: the pipeline does not
    wait for it, its child is canceled and the pipeline ends ``Failed``, its error naming only the node that
    failed (ml/pipelines.py: the emulator's reading of "continue execution of other steps ... if a step
    fails", off by default)."""
    probe = tmp_path / "probe"
    probe.mkdir()
    failing = command(code=str(src), command="python fail.py", environment=ENVIRONMENT)
    waiting = command(
        code=str(src), command="python wait.py", environment=ENVIRONMENT, environment_variables={"PROBE": str(probe)}
    )

    def stops() -> None:
        failing().name = "failing"
        waiting().name = "waiting"

    name = unique("stops")
    ml.jobs.create_or_update(_named(_pipeline(stops, compute=cluster)(), name))

    assert _finished(ml, name).status == "Failed"
    children = _children(ml, name)
    assert (children["failing"].status, children["waiting"].status) == ("Failed", "Canceled")
    with pytest.raises(JobException) as raised:
        ml.jobs.stream(name)
    assert "Failed nodes: /failing." in str(raised.value)


def test_continue_on_step_failure_runs_the_nodes_that_do_not_read_the_failed_one(
    ml: MLClient, cluster: str, src: Path, blobs: BlobServiceClient
) -> None:
    """``continue_on_step_failure=True``: the failed node's reader never starts, an independent node (a literal
    input) still runs to ``Completed`` with its output uploaded; the pipeline ends ``Failed``."""
    failing = command(
        code=str(src),
        command="python fail.py ${{outputs.rows}}",
        environment=ENVIRONMENT,
        outputs={"rows": Output(type="uri_folder")},
    )
    reader = command(
        code=str(src),
        command="echo ${{inputs.rows}}",
        environment=ENVIRONMENT,
        inputs={"rows": Input(type="uri_folder")},
    )
    writer = command(
        code=str(src),
        command="python write.py ${{outputs.out}} ${{inputs.n}}",
        environment=ENVIRONMENT,
        inputs={"n": Input(type="integer")},
        outputs={"out": Output(type="uri_folder")},
    )

    def goes_on(n: int) -> None:
        first = failing()
        reader(rows=first.outputs["rows"]).name = "reader"
        writer(n=n).name = "writer"

    name = unique("goes-on")
    ml.jobs.create_or_update(_named(_pipeline(goes_on, compute=cluster, continue_on_step_failure=True)(n=7), name))

    job = _finished(ml, name)

    assert job.status == "Failed"
    assert job.properties["azureml.continue_on_step_failure"] == "True"
    children = _children(ml, name)
    assert sorted(children) == ["first", "writer"]
    assert (children["first"].status, children["writer"].status) == ("Failed", "Completed")
    assert ml.jobs.get(children["writer"].name).status == "Completed"  # a child, read from run history
    listed = {j.name for j in ml.jobs.list()}
    assert name in listed
    assert not {c.name for c in children.values()} & listed  # children are in run history only
    assert blob_text(blobs, ml, f"azureml/{children['writer'].name}/out/n.txt") == "7"


def test_cancel_cascades_to_the_running_child(ml: MLClient, cluster: str, src: Path, tmp_path: Path) -> None:
    """``jobs.begin_cancel`` of a pipeline whose node runs an endless script: the child is canceled (its
    process killed) and the pipeline ends ``Canceled``; the node after it never starts."""
    probe = tmp_path / "probe"
    probe.mkdir()
    waiting = command(
        code=str(src),
        command="python wait.py ${{outputs.rows}}",
        environment=ENVIRONMENT,
        environment_variables={"PROBE": str(probe)},
        outputs={"rows": Output(type="uri_folder")},
    )
    reader = command(
        code=str(src),
        command="echo ${{inputs.rows}}",
        environment=ENVIRONMENT,
        inputs={"rows": Input(type="uri_folder")},
    )

    def endless() -> None:
        first = waiting()
        reader(rows=first.outputs["rows"]).name = "reader"

    name = unique("endless")
    ml.jobs.create_or_update(_named(_pipeline(endless, compute=cluster)(), name))
    deadline = time.monotonic() + WITHIN
    while not (probe / "started").exists():
        assert time.monotonic() < deadline, "the node's script never started"
        time.sleep(0.1)
    assert ml.jobs.get(name).status == "Running"

    ml.jobs.begin_cancel(name).result()

    assert _finished(ml, name).status == "Canceled"
    children = _children(ml, name)
    assert sorted(children) == ["first"]
    assert children["first"].status == "Canceled"


def test_the_seeds_parallel_pipeline_runs_to_completed_with_one_row_per_item(
    ml: MLClient, cluster: str, tmp_path: Path, blobs: BlobServiceClient
) -> None:
    """Issue 17's acceptance case: the seed's ``parallel_run_function`` (mltable ``job_data_path``, uri_folder
    ``score_model``, ``program_arguments="--model ${{inputs.score_model}}"``, ``append_row_to=
    "${{outputs.job_output_path}}"``, thresholds and retries as the seed sets them) in a ``@pipeline``.
    azure-ai-ml uploads the task's code, registers its environment and the anonymous parallel component
    (``components/azureml_anonymous/versions/{hash}``, readable with ``components.get``), the PUT answers 201,
    the parallel node becomes a child job listed with run history's ``StepType``; it runs Azure ML's parallel
    runtime on the cluster (the MLTable's CSV cut into mini-batches of about 100 bytes, two processes per node,
    ``init()`` reading the model input) and the pipeline ends ``Completed`` with one row per item in
    ``parallel_run_step.txt`` at the pipeline's output ("How to use parallel job in pipeline": append_row_to
    aggregates every run() return into that file)."""
    code = tmp_path / "src"
    code.mkdir()
    (code / "tabular_batch_inference.py").write_text(SCORE_SCRIPT)
    (code / "environment_parallel.yml").write_text(CONDA_FILE)
    container = blobstore(ml)
    data = blobs.get_container_client(container)
    prefix = unique("seed")
    data.upload_blob(f"{prefix}/iris/iris.csv", IRIS_CSV.encode(), overwrite=True)
    data.upload_blob(f"{prefix}/iris/MLTable", MLTABLE.encode(), overwrite=True)
    data.upload_blob(f"{prefix}/model/model.txt", MODEL.encode(), overwrite=True)
    parallel_run = parallel_run_function(
        name="batch_score_with_tabular_input",
        display_name="Batch Score with Tabular Dataset",
        description="parallel component for batch score",
        inputs=dict(
            job_data_path=Input(type=AssetTypes.MLTABLE, description="The data to be split and scored in parallel"),
            score_model=Input(type=AssetTypes.URI_FOLDER, description="The model for batch score."),
        ),
        outputs=dict(job_output_path=Output(type=AssetTypes.MLTABLE)),
        input_data="${{inputs.job_data_path}}",
        max_concurrency_per_instance=2,
        mini_batch_size="100",
        mini_batch_error_threshold=5,
        logging_level="DEBUG",
        error_threshold=5,
        retry_settings=dict(max_retries=2, timeout=60),  # type: ignore[arg-type]  # the seed's own dict
        task=RunFunction(
            code=str(code),
            entry_script="tabular_batch_inference.py",
            environment=Environment(
                image="mcr.microsoft.com/azureml/openmpi3.1.2-ubuntu18.04",
                conda_file=str(code / "environment_parallel.yml"),
            ),
            program_arguments="--model ${{inputs.score_model}}",
            append_row_to="${{outputs.job_output_path}}",
        ),
    )

    def seed_pipeline(pipeline_job_data_path: Input, pipeline_score_model: Input) -> dict[str, Output]:
        batch_inference = parallel_run(job_data_path=pipeline_job_data_path, score_model=pipeline_score_model)
        batch_inference.outputs["job_output_path"].type = "uri_file"
        return {"pipeline_job_out_file": batch_inference.outputs["job_output_path"]}

    pipeline = _pipeline(seed_pipeline, default_compute=cluster)(
        pipeline_job_data_path=Input(
            type=AssetTypes.MLTABLE, path=f"azureml://datastores/workspaceblobstore/paths/{prefix}/iris/"
        ),
        pipeline_score_model=Input(
            type=AssetTypes.URI_FOLDER, path=f"azureml://datastores/workspaceblobstore/paths/{prefix}/model/"
        ),
    )
    name = unique("seed")

    submitted = ml.jobs.create_or_update(_named(pipeline, name), experiment_name="seed")

    assert isinstance(submitted, PipelineJob)
    assert submitted.name == name
    node = submitted.jobs["batch_score_with_tabular_input"]
    # azure-ai-ml shows the node's componentId (an ARM id) as name:version.
    component_name, version = str(node.component).split(":")
    assert component_name == "azureml_anonymous"
    component = ml.components.get(component_name, version)
    assert component.type == "parallel"
    assert component.task is not None
    assert component.task.entry_script == "tabular_batch_inference.py"
    deadline = time.monotonic() + WITHIN
    children = _children(ml, name)
    while "batch_score_with_tabular_input" not in children:
        assert time.monotonic() < deadline, "the parallel node never became a child job"
        time.sleep(0.2)
        children = _children(ml, name)
    child = ml.jobs.get(children["batch_score_with_tabular_input"].name)
    assert child.properties["StepType"] == "ParallelRunStep"
    assert child.properties["azureml.pipeline"] == name

    job = _finished(ml, name)

    assert isinstance(job, PipelineJob)
    assert job.status == "Completed"
    output = job.outputs["pipeline_job_out_file"]
    assert not isinstance(output, str)
    assert output.path is not None
    path = output.path.removeprefix("azureml://datastores/workspaceblobstore/paths/").rstrip("/")
    rows = blob_text(blobs, ml, f"{path}/parallel_run_step.txt").splitlines()
    assert sorted(rows, key=lambda row: int(row.split()[0])) == ROWS


# Fails every file whose name starts with "bad" (an exception in run(), which Azure ML's runtime counts as the
# whole mini-batch failed) and returns the others.
FLAKY = """
import pathlib


def init():
    pass


def run(mini_batch):
    for path in mini_batch:
        if pathlib.Path(path).name.startswith("bad"):
            raise ValueError(f"cannot score {path}")
    return [pathlib.Path(path).name for path in mini_batch]
"""


@pytest.mark.parametrize(
    ("threshold", "status"),
    [
        pytest.param(2, "Completed", id="two-failed-mini-batches-at-threshold-2"),
        pytest.param(1, "Failed", id="two-failed-mini-batches-over-threshold-1"),
    ],
)
def test_a_parallel_node_fails_its_pipeline_once_failed_mini_batches_exceed_the_threshold(
    ml: MLClient, cluster: str, tmp_path: Path, blobs: BlobServiceClient, threshold: int, status: str
) -> None:
    """``mini_batch_error_threshold`` at the boundary through the real MLClient ("How to use parallel job in
    pipeline": "if the count of failed mini-batch is higher than this threshold, the parallel job will be marked
    as failed"): a local ``uri_folder`` input (azure-ai-ml uploads it) of five files, one per mini-batch, two of
    which make run() raise, no retries. At threshold 2 the node completes with the three good rows in
    ``parallel_run_step.txt``; at 1 the node and its pipeline fail, and the node's ``logs/job_result.txt``
    ("check job_result.txt to understand why the parallel job is failed") names the threshold (the emulator's
    wording: no public failed parallel job's result was found)."""
    code = tmp_path / "src"
    code.mkdir()
    (code / "score.py").write_text(FLAKY)
    data = tmp_path / "data"
    data.mkdir()
    for file in ("a.txt", "bad-1.txt", "b.txt", "bad-2.txt", "c.txt"):
        (data / file).write_text(file)
    score = parallel_run_function(
        inputs={"files": Input(type=AssetTypes.URI_FOLDER)},
        outputs={"rows": Output(type=AssetTypes.URI_FOLDER)},
        input_data="${{inputs.files}}",
        mini_batch_size="1",
        mini_batch_error_threshold=threshold,
        retry_settings=dict(max_retries=0, timeout=60),  # type: ignore[arg-type]  # azure-ai-ml takes the dict
        task=RunFunction(
            code=str(code), entry_script="score.py", environment=ENVIRONMENT, append_row_to="${{outputs.rows}}"
        ),
    )

    def flaky(files: Input) -> dict[str, Output]:
        node = score(files=files)
        node.name = "score"
        return {"rows": node.outputs["rows"]}

    name = unique("threshold")
    pipeline = _pipeline(flaky, default_compute=cluster)(files=Input(type=AssetTypes.URI_FOLDER, path=str(data)))
    ml.jobs.create_or_update(_named(pipeline, name))

    job = _finished(ml, name)

    assert isinstance(job, PipelineJob)
    assert job.status == status
    assert _children(ml, name)["score"].status == status
    if status == "Completed":
        output = job.outputs["rows"]
        assert not isinstance(output, str)
        assert output.path is not None
        path = output.path.removeprefix("azureml://datastores/workspaceblobstore/paths/").rstrip("/")
        assert sorted(blob_text(blobs, ml, f"{path}/parallel_run_step.txt").split()) == ["a.txt", "b.txt", "c.txt"]
    else:
        # azure-ai-ml streams no child job (PipelineChildJobError); the docs send the user to job_result.txt.
        child = _children(ml, name)["score"].name
        result = blob_text(blobs, ml, f"ExperimentRun/dcid.{child}/logs/job_result.txt")
        assert "exceeded mini_batch_error_threshold (1)" in result
