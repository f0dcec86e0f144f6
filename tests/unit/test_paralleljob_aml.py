"""ParallelJob spec → azure-ai-ml's ``parallel_run_function`` arguments and the pipeline job around it (pure
tables), the uid-derived job name, the parallel runtime's report read back, and one oracle: every spec the
apiserver accepts builds the seed's own entity."""

from __future__ import annotations

from typing import Any

import pytest
from azure.ai.ml.entities import (
    AmlTokenConfiguration,
    ManagedIdentityConfiguration,
    PipelineJob,
    UserIdentityConfiguration,
)
from azure.ai.ml.entities._builders.parallel import Parallel
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from amlops.api.paralleljob import ParallelJobSpec
from amlops.external import paralleljob_aml as aml
from amlops.external.paralleljob_aml_job import build_pipeline_job
from amlops.external.paralleljob_map import Counts
from amlops.reconcile.errors import TerminalError
from tests.e2e.test_fuzz_specs import BLOB, CONTAINER, INDEX, bind, paralleljob_specs, without_nulls

pytestmark = pytest.mark.unit

UID = "0b6a3c1e-5f7d-4e2a-9c11-2f3e4d5a6b7c"


def spec(**overrides: Any) -> ParallelJobSpec:
    task = {"code": "https://a.blob.core.windows.net/c/code", "entryScript": "score.py", **overrides.pop("task", {})}
    return ParallelJobSpec.model_validate(
        {
            "compute": {"name": "cpu-cluster"},
            "inputs": {"data": {"uri": "https://a.blob.core.windows.net/c/in"}},
            "outputs": {"scores": {"uri": "azureml://datastores/workspaceblobstore/paths/out/"}},
            "inputData": "${{inputs.data}}",
            "task": task,
            **overrides,
        }
    )


# -- naming --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempt", "name", "why"),
    [
        (0, f"pj-{UID}", "the first submission: the Batch job's own id, so both backends name a job alike"),
        (1, f"pj-{UID}-1", "a resume after suspend is a new job that must not collide with the canceled one"),
        (12, f"pj-{UID}-12", "every later attempt has its own name"),
    ],
)
def test_the_job_name_derives_from_the_uid(attempt: int, name: str, why: str) -> None:
    assert aml.job_name(UID, attempt) == name, why
    assert aml.job_name(UID, attempt) == aml.job_name(UID, attempt), "a resubmission after a crash finds it"


@pytest.mark.parametrize(
    ("uid", "attempt", "why"),
    [("", 0, "no uid: pj- then nothing is still a name, but not one from a uid"), (UID, -1, "no attempt before 0")],
)
def test_no_job_name_without_a_uid_or_with_a_negative_attempt(uid: str, attempt: int, why: str) -> None:
    if uid == "":
        assert aml.job_name("x", 0) != aml.job_name("y", 0), "two objects never share a job"
        return
    with pytest.raises(ValueError, match="attempt"):
        aml.job_name(uid, attempt)


def test_a_uid_that_makes_no_azure_ml_name_is_refused() -> None:
    with pytest.raises(ValueError, match="no Azure ML job name"):
        aml.job_name("a/b", 0)


# -- scalar mappings -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "expected", "why"),
    [
        ("10", "10", "a file count as it is"),
        (" 5 ", "5", "the schema allows surrounding spaces; azure-ai-ml's regex does not"),
        ("1kb", "1KB", "a size in azure-ai-ml's ^\\d+([kKmMgG][bB])*$"),
        ("2M", "2MB", "a unit without B: the schema allows it, azure-ai-ml needs the B"),
        ("3 G", "3GB", "a space before the unit"),
        ("64B", "64", "bytes: azure-ai-ml reads plain digits as bytes for tabular input"),
    ],
)
def test_mini_batch_size_in_azure_ai_mls_form(size: str, expected: str, why: str) -> None:
    assert aml.mini_batch_size(size) == expected, why


@pytest.mark.parametrize(
    ("conda", "pip", "expected", "why"),
    [
        (None, (), None, "neither: the image as it is"),
        (
            None,
            ("pandas==2.2",),
            {"name": "amlops-parallel", "dependencies": ["python=3.11", "pip", {"pip": ["pandas==2.2"]}]},
            "pip lines alone: a conda specification of their own",
        ),
        (
            {"name": "b", "dependencies": ["python=3.10", "numpy", {"pip": ["x"]}]},
            ("y",),
            {"name": "b", "dependencies": ["python=3.10", "numpy", "pip", {"pip": ["x", "y"]}]},
            "pip lines appended to the conda file's pip section; conda packages kept (Azure ML builds them)",
        ),
        (
            {"name": "b", "dependencies": ["python=3.10"]},
            (),
            {"name": "b", "dependencies": ["python=3.10"]},
            "a conda file alone, as it is",
        ),
    ],
)
def test_conda_specification(
    conda: dict[str, Any] | None, pip: tuple[str, ...], expected: dict[str, Any] | None, why: str
) -> None:
    assert aml.conda_specification(conda, pip) == expected, why


# -- the whole mapping -----------------------------------------------------------------------------------------


def test_the_seeds_example_maps_field_by_field() -> None:
    """The seed's tabular scoring (mltable data, a model folder, ``--model ${{inputs.score_model}}``,
    append_row_to, thresholds and retries) in the spec's words, read back in azure-ai-ml's."""
    job = spec(
        displayName="Batch Score with Tabular Dataset",
        description="parallel component for batch score",
        tags={"team": "ml"},
        properties={"origin": "seed"},
        experimentName="seed",
        inputs={
            "job_data_path": {"uri": "azureml://datastores/workspaceblobstore/paths/iris/", "type": "mltable"},
            "score_model": {"uri": "azureml:score-model:1"},
        },
        outputs={"job_output_path": {"uri": "azureml://datastores/workspaceblobstore/paths/out/"}},
        inputData="${{inputs.job_data_path}}",
        miniBatchSize="100",
        maxConcurrencyPerInstance=2,
        instanceCount=2,
        errorThreshold=5,
        miniBatchErrorThreshold=5,
        retrySettings={"maxRetries": 2, "timeout": 60},
        loggingLevel="DEBUG",
        environmentVariables={"A": "1"},
        isDeterministic=True,
        task={
            "entryScript": "tabular_batch_inference.py",
            "programArguments": "--model ${{inputs.score_model}}",
            "appendRowTo": "${{outputs.job_output_path}}",
            "environment": {"image": "mcr.microsoft.com/azureml/openmpi3.1.2-ubuntu18.04", "condaFile": "env.yml"},
        },
    )
    run = aml.parallel_run(job, aml.job_name(UID), "/tmp/code")  # a codeConfigMap written to a folder
    assert run.job == {
        "name": f"pj-{UID}",
        "compute": "cpu-cluster",
        "tags": {"team": "ml"},
        "properties": {"origin": "seed"},
        "experiment_name": "seed",
        "display_name": "Batch Score with Tabular Dataset",
        "description": "parallel component for batch score",
    }
    assert run.parallel == {
        "name": aml.NODE,
        "display_name": "Batch Score with Tabular Dataset",
        "input_data": "${{inputs.job_data_path}}",
        "mini_batch_size": "100",
        "error_threshold": 5,
        "mini_batch_error_threshold": 5,
        "retry_settings": {"max_retries": 2, "timeout": 60},
        "logging_level": "DEBUG",
        "max_concurrency_per_instance": 2,
        "instance_count": 2,
        "environment_variables": {"A": "1"},
        "is_deterministic": True,
    }
    assert run.inputs == {
        "job_data_path": aml.Data("mltable", "azureml://datastores/workspaceblobstore/paths/iris/"),
        "score_model": aml.Data("uri_folder", "azureml:score-model:1"),
    }
    assert run.outputs == {
        "job_output_path": aml.Data("uri_folder", "azureml://datastores/workspaceblobstore/paths/out/")
    }
    assert run.task == aml.RunFunction(
        code="/tmp/code",
        entry_script="tabular_batch_inference.py",
        environment=aml.Environment("mcr.microsoft.com/azureml/openmpi3.1.2-ubuntu18.04", "env.yml"),
        program_arguments="--model ${{inputs.score_model}}",
        append_row_to="${{outputs.job_output_path}}",
    )


@pytest.mark.parametrize(
    ("job", "key", "expected", "why"),
    [
        (spec(partitionKeys=["region"]), "partition_keys", ["region"], "partition keys given: they decide"),
        (spec(partitionKeys=["region"]), "mini_batch_size", None, "…and no size is sent to be ignored"),
        (spec(miniBatchSize="10MB"), "mini_batch_size", "10MB", "no partition keys: the size"),
        (spec(), "mini_batch_size", None, "no size: Azure ML's own default (10 files, 1 MB), as on Batch"),
        (spec(), "display_name", aml.NODE, "no displayName: the node's own name in Studio"),
        (spec(), "instance_type", None, "no resources.instanceType: the AmlCompute's own VM size"),
        (
            spec(compute={"name": "cpu-cluster", "instanceType": "STANDARD_D4S_V3"}),
            "instance_type",
            None,
            "compute.instanceType sizes Batch pools: never sent to Azure ML",
        ),
        (spec(resources={"instanceType": "Standard_NC6s_v3"}), "instance_type", "Standard_NC6s_v3", "as given"),
        (spec(resources={"shmSize": "2g"}), "shm_size", "2g", "as given: the schema took Azure ML's form"),
        (spec(resources={"dockerArgs": "--ipc=host"}), "docker_args", "--ipc=host", "as given"),
        (spec(resources={"dockerArgs": "--ipc=host"}), "shm_size", None, "one resource given, not the others"),
        (spec(), "identity", None, "no identity: Azure ML's default (the compute's)"),
        (spec(identity={"type": "aml_token"}), "identity", {"type": "aml_token"}, "a type alone"),
        (
            spec(identity={"type": "managed", "clientId": "11111111-2222-3333-4444-555555555555"}),
            "identity",
            {"type": "managed", "client_id": "11111111-2222-3333-4444-555555555555"},
            "a user-assigned identity: only the ids given",
        ),
    ],
)
def test_parallel_keywords(job: ParallelJobSpec, key: str, expected: Any, why: str) -> None:
    assert aml.parallel_run(job, "n").parallel.get(key) == expected, why


@pytest.mark.parametrize(
    ("job", "expected", "why"),
    [
        (spec(), aml.Environment(aml.DEFAULT_IMAGE), "no environment: azure-ai-ml needs one, Azure ML's base image"),
        (
            spec(task={"environment": {"pipRequirements": ["x"]}}),
            aml.Environment(aml.DEFAULT_IMAGE, None, ("x",)),
            "pip lines without an image: on the base image",
        ),
    ],
)
def test_environment(job: ParallelJobSpec, expected: aml.Environment, why: str) -> None:
    assert aml.parallel_run(job, "n").task.environment == expected, why


def test_the_object_fields_stay_off_the_pipeline_job_when_absent() -> None:
    assert aml.parallel_run(spec(), "n").job == {"name": "n", "compute": "cpu-cluster", "tags": {}, "properties": {}}


# -- the entity ------------------------------------------------------------------------------------------------


def test_the_built_entity_is_the_seeds_parallel_node_in_a_pipeline_job() -> None:
    job = spec(
        experimentName="seed",
        inputs={"data": {"uri": "azureml://datastores/workspaceblobstore/paths/iris/", "type": "mltable"}},
        task={"programArguments": "--n 1", "appendRowTo": "${{outputs.scores}}"},
        partitionKeys=["region"],
    )
    pipeline = build_pipeline_job(aml.parallel_run(job, aml.job_name(UID)), None)
    assert isinstance(pipeline, PipelineJob)
    assert pipeline.name == f"pj-{UID}"
    assert pipeline.experiment_name == "seed"
    assert pipeline.settings is not None
    assert pipeline.settings.default_compute == "cpu-cluster"
    node = pipeline.jobs[aml.NODE]
    assert isinstance(node, Parallel)
    assert node.partition_keys == ["region"]
    assert node.inputs["data"].path == "azureml://datastores/workspaceblobstore/paths/iris/"
    assert node.task is not None
    assert node.task.append_row_to == "${{outputs.scores}}"


def test_resources_and_identity_reach_the_parallel_node() -> None:
    """azure-ai-ml's ``parallel_run_function(instance_type=, shm_size=, docker_args=, identity=)`` as the node
    has them: its ``resources`` (JobResourceConfiguration) and its identity configuration."""
    client_id = "11111111-2222-3333-4444-555555555555"
    job = spec(
        instanceCount=2,
        resources={"instanceType": "Standard_NC6s_v3", "shmSize": "2g", "dockerArgs": "--ipc=host"},
        identity={"type": "managed", "clientId": client_id},
    )
    node = build_pipeline_job(aml.parallel_run(job, aml.job_name(UID)), None).jobs[aml.NODE]
    assert isinstance(node, Parallel)
    assert node.resources is not None
    resources = node.resources
    assert (resources.instance_count, resources.instance_type) == (2, "Standard_NC6s_v3")
    assert (resources.shm_size, resources.docker_args) == ("2g", "--ipc=host")
    assert isinstance(node.identity, ManagedIdentityConfiguration)
    assert node.identity.client_id == client_id


@pytest.mark.parametrize(
    ("declared", "kind", "why"),
    [
        ({"type": "user_identity"}, UserIdentityConfiguration, "the submitting user's identity"),
        ({"type": "aml_token"}, AmlTokenConfiguration, "an Azure ML token"),
        ({"type": "managed"}, ManagedIdentityConfiguration, "no id: the compute's system-assigned identity"),
    ],
)
def test_each_identity_type_is_azure_ai_mls_own(declared: dict[str, str], kind: type, why: str) -> None:
    node = build_pipeline_job(aml.parallel_run(spec(identity=declared), "n"), None).jobs[aml.NODE]
    assert isinstance(node, Parallel)
    assert isinstance(node.identity, kind), why


@pytest.mark.parametrize(
    ("declared", "expected", "why"),
    [
        ({"type": "integer", "value": "5"}, 5, "an integer literal reaches azure-ai-ml as an int"),
        ({"type": "number", "value": "0.5"}, 0.5, "a number as a float"),
        ({"type": "boolean", "value": "True"}, True, "a boolean as a bool, whatever its case"),
        ({"type": "string", "value": "x y"}, "x y", "a string as it is"),
    ],
)
def test_a_literal_input_is_the_nodes_input_value(declared: dict[str, str], expected: object, why: str) -> None:
    job = spec(inputs={"data": {"uri": "https://a.blob.core.windows.net/c/in"}, "n": declared})
    node = build_pipeline_job(aml.parallel_run(job, aml.job_name(UID)), None).jobs[aml.NODE]
    assert isinstance(node, Parallel)
    assert node.inputs["n"]._data == expected, why


BOUND = {BLOB: "https://acct.blob.core.windows.net", CONTAINER: "c", INDEX: "0"}


def accepted(raw: Any) -> ParallelJobSpec | None:
    """The spec as the apiserver stores it, or None if it refuses it (the models refuse exactly what the CRD's
    schema and CEL rules refuse: tests/e2e/test_fuzz_specs.py checks that against the real apiserver)."""
    try:
        return ParallelJobSpec.model_validate(without_nulls(bind(raw, BOUND)))
    except (ValidationError, ValueError, TypeError):
        return None


@pytest.fixture(scope="module")
def code_folder(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Where the operator writes a codeConfigMap's files (azure-ai-ml checks a local folder exists)."""
    folder = tmp_path_factory.mktemp("code")
    (folder / "score.py").write_text("def run(mini_batch):\n    return mini_batch\n")
    return str(folder)


@settings(max_examples=120, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(raw=paralleljob_specs(), attempt=st.integers(0, 3))
def test_every_accepted_spec_builds_the_seeds_parallel_run_function(
    code_folder: str, raw: dict[str, Any], attempt: int
) -> None:
    """One oracle: the fuzz test's own spec generator (valid and invalid values field by field); for every spec
    the schema accepts, azure-ai-ml's ``parallel_run_function`` in a pipeline job builds and passes azure-ai-ml's
    own client-side validation (what ``jobs.create_or_update`` runs before sending anything) — or, for a
    ``task.code`` azure-ai-ml cannot take (the schema does not check it yet), the mapping refuses it with
    ``InvalidSpec`` before anything is built or created. The generator sets resources (instanceType, shmSize,
    dockerArgs) and identity (each type, with and without ids) too."""
    job = accepted(raw)
    if job is None:
        return
    local = code_folder if job.task.code_config_map else None
    if local is None and not aml._REMOTE_CODE.match(job.task.code or ""):
        with pytest.raises(TerminalError) as refused:
            aml.parallel_run(job, aml.job_name(UID, attempt))
        assert refused.value.reason == "InvalidSpec"
        return
    pipeline = build_pipeline_job(aml.parallel_run(job, aml.job_name(UID, attempt), local), None)
    assert pipeline.name == aml.job_name(UID, attempt)


@pytest.mark.parametrize(
    ("inputs", "outputs", "message", "why"),
    [
        ({"": {"uri": "https://a/c/in"}}, {}, "names are letters", "an empty name: azure-ai-ml refuses it"),
        ({"a-b": {"uri": "https://a/c/in"}}, {}, "names are letters", "${{inputs.a-b}} cannot be written"),
        ({"ä": {"uri": "https://a/c/in"}}, {}, "names are letters", "azure-ai-ml's names are ASCII"),
        ({"x\n": {"uri": "https://a/c/in"}}, {}, "names are letters", "a final newline: CEL's RE2 $ refuses it"),
        ({"Data": {"uri": "https://a/c/in"}}, {}, "differ only by case", "azure-ai-ml: equal ignoring case"),
        ({}, {"Scores": {"uri": "https://a/c/o"}}, "differ only by case", "an output like an input"),
    ],
)
def test_io_names_azure_ai_ml_refuses_are_refused_by_the_model(
    inputs: dict[str, Any], outputs: dict[str, Any], message: str, why: str
) -> None:
    """The schema refuses them at apply time (tests/e2e/test_paralleljob_schema.py), the model as well: no spec
    azure-ai-ml would refuse for its names reaches the mapping."""
    with pytest.raises(ValidationError, match=message):
        spec(
            inputs={"data": {"uri": "https://a/c/in"}, **inputs},
            outputs={"scores": {"uri": "https://a/c/o"}, **outputs},
        )
    assert why


@pytest.mark.parametrize(
    ("code", "ok", "why"),
    [
        ("https://acct.blob.core.windows.net/c/code", True, "the spec's blob folder URI: azure-ai-ml takes a URL"),
        ("azureml:scoring-code:3", True, "a registered code asset"),
        ("not a uri", False, "azure-ai-ml reads it as azureml:not a uri, then as a local folder of the operator's"),
        ("../../x/secrets/y", False, "a path: the operator's own file system must never be uploaded"),
        ("file:///etc/passwd", False, "idem"),
        ("azureml://datastores/workspaceblobstore/paths/code/", False, "azure-ai-ml 1.35.2 refuses a datastore path"),
        ("http://169.254.169.254/metadata", False, "plain http: only https leaves the operator"),
    ],
)
def test_remote_code(code: str, ok: bool, why: str) -> None:
    if ok:
        assert aml.remote_code(code) == code, why
        return
    with pytest.raises(TerminalError) as refused:
        aml.remote_code(code)
    assert refused.value.reason == "InvalidSpec", why


# -- the parallel runtime's report ---------------------------------------------------------------------------

HEADER = (
    "Mini-batch Id,Picked Count,Process,Process Start Time,Total,Succeeded,Failed,Elapsed Seconds,Process Seconds,"
    "Run Method Seconds,Status,Error Category,Error Message,Mini-batch Detail\n"
)


def row(index: int, pick: int, total: int, succeeded: int, status: str) -> str:
    return f"{index},{pick},process000,2026-01-01 00:00:00,{total},{succeeded},{total - succeeded},1,1,1,{status},,,\n"


@pytest.mark.parametrize(
    ("rows", "total", "counts", "why"),
    [
        ([], None, Counts(total=0), "no row yet: nothing processed"),
        ([], 4, Counts(total=4, pending=4), "planned but none processed: all pending"),
        (
            [row(0, 1, 3, 3, "RUN_DONE"), row(1, 1, 3, 2, "RUN_DONE")],
            None,
            Counts(total=2, succeeded=1, failed=1, items_processed=5, items_failed=1, failed_indexes=(1,)),
            "a mini-batch whose run() returned fewer results than inputs failed (Azure ML: it counts against "
            "mini_batch_error_threshold; the Batch backend's paralleljob_map.finished says the same), one item failed",
        ),
        (
            [row(0, 1, 2, 0, "RUN_EXCEPTION"), row(0, 2, 2, 2, "RUN_DONE")],
            3,
            Counts(total=3, pending=2, succeeded=1, retried=1, items_processed=2),
            "a retry that succeeded: the last pick decides",
        ),
        (
            [row(0, 1, 2, 0, "RUN_TIMEOUT"), row(0, 2, 2, 0, "RUN_EXCEPTION"), row(3, 1, 1, 1, "RUN_DONE")],
            None,
            Counts(total=2, succeeded=1, failed=1, retried=1, items_processed=1, items_failed=2, failed_indexes=(0,)),
            "retries used up: failed, its index named",
        ),
        (["x,1,p,t,1,1,0,1,1,1,RUN_DONE,,,\n"], None, Counts(total=0), "a row without a mini-batch id is not counted"),
    ],
)
def test_report_counts(rows: list[str], total: int | None, counts: Counts, why: str) -> None:
    assert aml.report_counts(HEADER + "".join(rows), total) == counts, why


@pytest.mark.parametrize(
    ("rows", "counts", "why"),
    [
        (
            [row(0, 1, 2, 0, "RUN_EXCEPTION")],
            Counts(total=3, pending=3, items_processed=0),
            "raised on its first of 3 tries (max_retries 2): it will be picked again, pending",
        ),
        (
            [row(0, 1, 2, 0, "RUN_TIMEOUT"), row(0, 2, 2, 0, "RUN_EXCEPTION")],
            Counts(total=3, pending=3, retried=1),
            "second try failed, one left: still pending, one retry counted",
        ),
        (
            [row(0, 1, 2, 0, "RUN_EXCEPTION"), row(0, 2, 2, 0, "RUN_EXCEPTION"), row(0, 3, 2, 0, "RUN_EXCEPTION")],
            Counts(total=3, pending=2, failed=1, retried=2, items_failed=2, failed_indexes=(0,)),
            "the third try was the last: failed for good",
        ),
        (
            [row(1, 1, 3, 2, "RUN_DONE")],
            Counts(total=3, pending=2, failed=1, items_processed=2, items_failed=1, failed_indexes=(1,)),
            "fewer results than items is not retried: failed at once",
        ),
    ],
)
def test_report_counts_while_running(rows: list[str], counts: Counts, why: str) -> None:
    assert aml.report_counts(HEADER + "".join(rows), 3, max_retries=2) == counts, why


@pytest.mark.parametrize(
    ("text", "total", "why"),
    [
        ("", None, "no overview yet"),
        ("2026-01-01T00:00:00 3 mini-batches created (5 items).\n", 3, "the emulator's first line"),
        (
            "t 3 mini-batches created (5 items).\nt 1 of 3 mini-batches processed.\n"
            "t 7 mini-batches created (9 items).\n",
            7,
            "created so far: the last count says it",
        ),
        ("t 1 of 3 mini-batches processed.\n", None, "a processed line names no created count"),
    ],
)
def test_overview_total(text: str, total: int | None, why: str) -> None:
    assert aml.overview_total(text) == total, why
