"""CommandJob spec → azure-ai-ml's ``command()`` arguments (pure tables), the uid-derived job name, and one oracle:
every spec the model accepts builds azure-ai-ml's own ``Command`` with the spec's values."""

from __future__ import annotations

from typing import Any

import pytest
from azure.ai.ml.entities import Command
from azure.ai.ml.entities._job.distribution import DistributionConfiguration
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from amlops.api.commandjob import CommandJobSpec
from amlops.external import commandjob_aml as aml
from amlops.external.commandjob_aml_job import build_command_job
from amlops.external.paralleljob_aml import Data
from amlops.reconcile.errors import TerminalError
from amlops.reconcile.managed import OWNER_TAG

pytestmark = pytest.mark.unit

UID = "0b6a3c1e-5f7d-4e2a-9c11-2f3e4d5a6b7c"
OWNER = f"ns.train.{UID}"
IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest"


def spec(**overrides: Any) -> CommandJobSpec:
    return CommandJobSpec.model_validate(
        {
            "compute": "cpu",
            "code": "azureml:train-code:1",
            "command": "python train.py",
            "environment": {"image": IMAGE},
            **overrides,
        }
    )


def run(job: CommandJobSpec) -> aml.CommandRun:
    return aml.command_run(job, aml.job_name(UID), "cpu-cluster", OWNER)


# -- naming --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempt", "name", "why"),
    [
        (0, f"cj-{UID}", "the first submission: found again by name after a crash, never submitted twice"),
        (1, f"cj-{UID}-1", "a resume after suspend is a new job that must not collide with the canceled one"),
        (7, f"cj-{UID}-7", "every later attempt has its own name"),
    ],
)
def test_the_job_name_derives_from_the_uid(attempt: int, name: str, why: str) -> None:
    assert aml.job_name(UID, attempt) == name, why


@pytest.mark.parametrize(
    ("uid", "attempt", "match", "why"),
    [
        (UID, -1, "attempt", "no attempt before the first"),
        ("a/b", 0, "no Azure ML job name", "a uid Azure ML's name rule refuses"),
    ],
)
def test_no_job_name(uid: str, attempt: int, match: str, why: str) -> None:
    with pytest.raises(ValueError, match=match):
        aml.job_name(uid, attempt)


# -- the arguments -------------------------------------------------------------------------------------------


def test_the_estimators_fields_map_one_by_one() -> None:
    """An Estimator-like spec (source_directory, entry_script + script_params, compute_target, node_count,
    process_count_per_node, distributed_training, environment_variables, max_run_duration_seconds, shm_size)."""
    job = spec(
        command="python train.py --epochs ${{inputs.epochs}} --out ${{outputs.model}}",
        inputs={"epochs": {"type": "integer", "value": "3"}},
        outputs={"model": {}},
        environmentVariables={"NCCL_DEBUG": "INFO"},
        resources={"instanceCount": 2, "shmSize": "2g", "dockerArgs": "--ipc=host"},
        distribution={"type": "PyTorch", "processCountPerInstance": 2},
        limits={"timeout": 3600},
        displayName="train",
        experimentName="exp",
        description="d",
        tags={"team": "a"},
        properties={"p": "1"},
    )

    out = run(job)

    assert out.arguments == {
        "name": f"cj-{UID}",
        "command": "python train.py --epochs ${{inputs.epochs}} --out ${{outputs.model}}",
        "compute": "cpu-cluster",
        "environment_variables": {"NCCL_DEBUG": "INFO"},
        "instance_count": 2,
        "tags": {"team": "a", OWNER_TAG: OWNER},
        "properties": {"p": "1"},
        "display_name": "train",
        "experiment_name": "exp",
        "description": "d",
        "shm_size": "2g",
        "docker_args": "--ipc=host",
        "timeout": 3600,
        "distribution": {"type": "pytorch", "process_count_per_instance": 2},
    }
    assert out.code == "azureml:train-code:1"
    assert out.inputs == {"epochs": Data("integer", None, "3")}
    assert out.outputs == {"model": Data("uri_folder", None)}


def test_absent_fields_stay_off_the_arguments() -> None:
    """Azure ML's defaults (experiment from the operator's working directory, no timeout, one process per node) are
    not restated."""
    assert set(run(spec()).arguments) == {
        "name", "command", "compute", "environment_variables", "instance_count", "tags", "properties",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("tags", "why"),
    [
        ({}, "no tags of the user's: amlops' owner tag alone"),
        ({OWNER_TAG: "someone.else.x"}, "a user's tag of the owner key cannot pose as another owner"),
    ],
)
def test_the_owner_tag_is_always_amlops(tags: dict[str, str], why: str) -> None:
    assert run(spec(tags=tags)).arguments["tags"][OWNER_TAG] == OWNER, why


def test_a_config_map_code_folder_replaces_code() -> None:
    job = spec(code=None, codeConfigMap="train-code")
    assert aml.command_run(job, "n", "c", OWNER, local_code="/tmp/x").code == "/tmp/x"


@pytest.mark.parametrize(
    ("distribution", "expected", "why"),
    [
        ({"type": "PyTorch"}, {"type": "pytorch"}, "one process per instance: Azure ML's default, not restated"),
        ({"type": "Mpi", "processCountPerInstance": 4}, {"type": "mpi", "process_count_per_instance": 4}, "mpi"),
        (
            {"type": "TensorFlow", "workerCount": 3, "parameterServerCount": 1},
            {"type": "tensorflow", "worker_count": 3, "parameter_server_count": 1},
            "tensorflow counts workers and parameter servers",
        ),
    ],
)
def test_distribution(distribution: dict[str, Any], expected: dict[str, Any], why: str) -> None:
    assert run(spec(distribution=distribution)).arguments["distribution"] == expected, why


@pytest.mark.parametrize(
    ("environment", "expected", "why"),
    [
        ({"name": "azureml:sklearn:3"}, aml.EnvironmentSource(registered="azureml:sklearn:3"), "registered"),
        ({"name": "azureml:sklearn@latest"}, aml.EnvironmentSource(registered="azureml:sklearn@latest"), "latest"),
        ({"image": IMAGE}, aml.EnvironmentSource(image=IMAGE), "an image as it is: no conda specification"),
        (
            {"image": IMAGE, "pipRequirements": ["numpy==2.1"]},
            aml.EnvironmentSource(
                image=IMAGE,
                conda={"name": "amlops-parallel", "dependencies": ["python=3.11", "pip", {"pip": ["numpy==2.1"]}]},
            ),
            "pip lines alone (the Estimator's pip_packages): a python and pip environment around them",
        ),
        (
            {"image": IMAGE, "condaFile": "name: t\ndependencies:\n- python=3.10\n- scikit-learn\n",
             "pipRequirements": ["mlflow"]},
            aml.EnvironmentSource(
                image=IMAGE,
                conda={"name": "t", "dependencies": ["python=3.10", "scikit-learn", "pip", {"pip": ["mlflow"]}]},
            ),
            "conda_dependencies_file with pip_packages: pip lines join the file's own pip section",
        ),
    ],
)  # fmt: skip
def test_environment(environment: dict[str, Any], expected: aml.EnvironmentSource, why: str) -> None:
    assert aml.environment_source(spec(environment=environment)) == expected, why


@pytest.mark.parametrize(
    ("overrides", "message", "why"),
    [
        ({"command": "python t.py ${{inputs.data}}"}, "inputs.data", "a reference to no input"),
        ({"command": "python t.py ${{outputs.model}}"}, "outputs.model", "a reference to no output"),
        ({"environment": {"image": IMAGE, "condaFile": "[1, 2"}}, "no YAML", "a conda file that does not parse"),
        ({"environment": {"image": IMAGE, "condaFile": "- a\n- b\n"}}, "no conda environment", "a list, no mapping"),
    ],
)
def test_refused_before_anything_is_built(overrides: dict[str, Any], message: str, why: str) -> None:
    with pytest.raises(TerminalError, match=message) as raised:
        run(spec(**overrides))
    assert raised.value.reason == "InvalidSpec", why


@pytest.mark.parametrize(
    ("overrides", "why"),
    [
        ({"code": None}, "neither code nor codeConfigMap"),
        ({"codeConfigMap": "c"}, "both code and codeConfigMap"),
        ({"code": "./src"}, "a local path of the operator's: no remote code"),
        ({"environment": {}}, "no environment source"),
        ({"environment": {"name": "azureml:e:1", "image": IMAGE}}, "both a registered environment and an image"),
        ({"environment": {"name": "azureml:e:1", "pipRequirements": ["x"]}}, "packages on a registered environment"),
        ({"environment": {"name": "sklearn"}}, "a registered environment without azureml:<name>:<version>"),
        ({"distribution": {"type": "Mpi", "workerCount": 2}}, "workerCount is TensorFlow's"),
        ({"distribution": {"type": "TensorFlow", "processCountPerInstance": 2}}, "processCountPerInstance isn't"),
        ({"distribution": {"type": "Ray"}}, "a distribution azure-ai-ml has but the emulator and issue do not"),
        ({"resources": {"shmSize": "2 GB"}}, "no docker shm size"),
        ({"resources": {"instanceCount": 0}}, "no node"),
        ({"limits": {"timeout": 0}}, "no run time"),
        ({"useDocker": True}, "an Estimator parameter v2 dropped: refused with its replacement"),
        ({"pipPackages": ["numpy"]}, "the Estimator's list form: environment.pipRequirements instead"),
        ({"vmSize": "STANDARD_NC6"}, "serverless compute (vm_size without a target): refused with the way instead"),
        ({"inputs": {"a-b": {"uri": "azureml://datastores/d/paths/p"}}}, "a name no ${{inputs.x}} can name"),
        ({"outputs": {"m": {}, "M": {}}}, "names equal but for case: azure-ai-ml refuses them"),
        ({"inputs": {"data": {"value": "1", "type": "integer"}}, "outputs": {"DATA": {}}}, "across inputs and outputs"),
    ],
)
def test_the_model_refuses(overrides: dict[str, Any], why: str) -> None:
    """What the schema and its CEL rules refuse (tests/e2e/test_commandjob.py applies them to the apiserver)."""
    raw = {"compute": "cpu", "code": "azureml:c:1", "command": "python t.py", "environment": {"image": IMAGE}}
    raw.update(overrides)
    raw = {k: v for k, v in raw.items() if v is not None}
    with pytest.raises(ValidationError):
        CommandJobSpec.model_validate(raw)
    assert why


# -- the oracle: azure-ai-ml's own command() builds every accepted spec -------------------------------------


def _specs() -> st.SearchStrategy[dict[str, Any]]:
    name = st.sampled_from(["data", "model", "x_1", "Data2"])
    data_input = st.fixed_dictionaries(
        {"uri": st.sampled_from(["azureml://datastores/workspaceblobstore/paths/in/", "https://a.blob.core.windows.net/c/in"])},
        optional={"type": st.sampled_from(["uri_folder", "uri_file", "mltable"])},
    )  # fmt: skip
    literal = st.sampled_from(
        [{"type": "integer", "value": "3"}, {"type": "number", "value": "0.5"}, {"type": "boolean", "value": "true"},
         {"type": "string", "value": "adam"}]
    )  # fmt: skip
    output = st.fixed_dictionaries(
        {}, optional={"uri": st.just("azureml://datastores/workspaceblobstore/paths/out/"),
                      "type": st.sampled_from(["uri_folder", "uri_file"])}
    )  # fmt: skip
    environment = st.one_of(
        st.fixed_dictionaries({"name": st.sampled_from(["azureml:sklearn:1", "azureml:torch@latest"])}),
        st.fixed_dictionaries(
            {"image": st.just(IMAGE)},
            optional={"condaFile": st.just("name: e\ndependencies: [python=3.11]\n"),
                      "pipRequirements": st.lists(st.sampled_from(["numpy", "torch==2.3"]), max_size=2)},
        ),
    )  # fmt: skip
    distribution = st.one_of(
        st.fixed_dictionaries({"type": st.sampled_from(["PyTorch", "Mpi"])},
                              optional={"processCountPerInstance": st.integers(1, 8)}),
        st.fixed_dictionaries({"type": st.just("TensorFlow")},
                              optional={"workerCount": st.integers(1, 4), "parameterServerCount": st.integers(0, 2)}),
    )  # fmt: skip
    return st.fixed_dictionaries(
        {
            "compute": st.just("cpu"),
            "code": st.sampled_from(["azureml:code:1", "https://a.blob.core.windows.net/c/src",
                                     "azureml://datastores/workspaceblobstore/paths/src/"]),
            "command": st.just("python train.py"),
            "environment": environment,
        },
        optional={
            "inputs": st.dictionaries(name, st.one_of(data_input, literal), max_size=2),
            "outputs": st.dictionaries(name, output, max_size=2),
            "environmentVariables": st.dictionaries(st.sampled_from(["A", "B_C"]), st.text(max_size=5), max_size=2),
            "resources": st.fixed_dictionaries({}, optional={"instanceCount": st.integers(1, 4),
                                                             "shmSize": st.sampled_from(["2g", "512m", "1024"]),
                                                             "dockerArgs": st.just("--ipc=host")}),
            "distribution": distribution,
            "limits": st.fixed_dictionaries({}, optional={"timeout": st.integers(1, 10**6)}),
            "displayName": st.text(max_size=10),
            "experimentName": st.sampled_from(["exp", "train_1"]),
            "description": st.text(max_size=10),
            "tags": st.dictionaries(st.sampled_from(["team", "stage"]), st.text(max_size=5), max_size=2),
            "properties": st.dictionaries(st.sampled_from(["p"]), st.text(max_size=5), max_size=1),
            "identity": st.sampled_from([
                {"type": "managed"}, {"type": "user_identity"}, {"type": "aml_token"},
                {"type": "managed", "clientId": "00000000-0000-0000-0000-0000000000c1"},
            ]),
        },
    )  # fmt: skip


@settings(max_examples=100, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(raw=_specs(), attempt=st.integers(0, 3))
def test_every_accepted_spec_builds_azure_ai_mls_command(raw: dict[str, Any], attempt: int) -> None:
    """Each spec the model accepts (input and output names that differ only by case are refused there, as by the
    CRD's CEL) builds a ``Command`` carrying its values: never an error, which would leave the object in
    InternalError."""
    try:
        job = CommandJobSpec.model_validate(raw)
    except ValidationError:
        return
    references = " ".join(f"${{{{inputs.{n}}}}}" for n in job.inputs)
    job = job.model_copy(update={"command": f"{job.command} {references}".strip()})
    built = build_command_job(aml.command_run(job, aml.job_name(UID, attempt), "cpu-cluster", OWNER))

    assert isinstance(built, Command)
    assert built.name == aml.job_name(UID, attempt)
    if job.identity is not None:
        # azure-ai-ml's entities name the managed identity's type so (its YAML says "managed").
        expected = {"managed": "managed_identity"}.get(job.identity.type, job.identity.type)
        assert built.identity is not None
        assert getattr(built.identity, "type", None) == expected
        assert getattr(built.identity, "client_id", None) == job.identity.client_id
    else:
        assert built.identity is None
    assert built.compute == "cpu-cluster"
    assert built.tags is not None
    assert built.tags[OWNER_TAG] == OWNER
    assert built.resources is not None
    assert built.resources.instance_count == job.resources.instance_count
    assert built.environment_variables == job.environment_variables
    assert set(built.inputs) == set(job.inputs)
    assert set(built.outputs) == set(job.outputs)
    if job.limits.timeout is not None:
        assert built.limits is not None
        assert built.limits.timeout == job.limits.timeout
    if job.distribution is not None:
        assert isinstance(built.distribution, DistributionConfiguration)
        assert built.distribution.type == job.distribution.type.lower()
    if job.environment.name is not None:
        assert built.environment == job.environment.name
