"""What a pipeline job's REST nodes become (``ml/pipelines.py``): pure.

Evidence: the node bodies below are what azure-ai-ml 1.35.2 PUTs for the seed's pipeline
(``parallel_run_function(...)`` with an mltable ``job_data_path``, a uri_folder ``score_model``,
``program_arguments="--model ${{inputs.score_model}}"``, ``append_row_to="${{outputs.job_output_path}}"``,
``mini_batch_size="100"``, ``retry_settings=dict(max_retries=2, timeout=60)``; /work/shared/seeds/
002_40581eadf274a66d.txt) and for a two-step ``@pipeline`` of ``command(...)`` nodes, captured on the wire against
the emulator (``BaseNode._to_rest_object``, ``Parallel._to_rest_object``, ``Command._to_rest_object``);
azure-ai-ml's ``parallel_run_function`` documents the defaults (``max_concurrency_per_instance`` 1,
``error_threshold``/``mini_batch_error_threshold`` -1, ``logging_level`` INFO).
"""

from __future__ import annotations

from typing import Any

import pytest

from amlops_emulator.arm.errors import ArmError
from amlops_emulator.ml.components import Component
from amlops_emulator.ml.execution import ParallelTask, RunStatus
from amlops_emulator.ml.pipelines import (
    bind_node_output,
    bound_inputs,
    command_properties,
    dependencies,
    node_outputs,
    parallel_task,
    pipeline_status,
    rest_distribution,
)

pytestmark = pytest.mark.emulator

WS = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"
CODE = f"azureml:{WS}/codes/c3be2bc3-585d-4489-b2fe-65a122d08fb6/versions/1"
ENV = f"azureml:{WS}/environments/CliV2AnonymousEnvironment/versions/b6f7"
CLUSTER = f"{WS}/computes/cpu-cluster"

SEED_TASK = {
    "type": "run_function",
    "code": CODE,
    "entry_script": "tabular_batch_inference.py",
    "program_arguments": "--model ${{inputs.score_model}}",
    "append_row_to": "${{outputs.job_output_path}}",
    "environment": ENV,
}
SEED_SPEC: dict[str, Any] = {
    "name": "batch_score_with_tabular_input",
    "type": "parallel",
    "logging_level": "DEBUG",
    "task": SEED_TASK,
    "mini_batch_size": "100",
    "input_data": "${{inputs.job_data_path}}",
    "retry_settings": {"timeout": 60, "max_retries": 2},
    "max_concurrency_per_instance": 2,
    "error_threshold": 5,
    "mini_batch_error_threshold": 5,
    "inputs": {"job_data_path": {"type": "mltable"}, "score_model": {"type": "uri_folder"}},
    "outputs": {"job_output_path": {"type": "mltable"}},
}
SEED_NODE: dict[str, Any] = {
    "type": "parallel",
    "error_threshold": 5,
    "mini_batch_error_threshold": 5,
    "max_concurrency_per_instance": 2,
    "task": SEED_TASK,
    "input_data": "${{inputs.job_data_path}}",
    "name": "batch_score_with_tabular_input",
    "inputs": {
        "job_data_path": {"value": "${{parent.inputs.pipeline_job_data_path}}", "job_input_type": "literal"},
        "score_model": {"value": "${{parent.inputs.pipeline_score_model}}", "job_input_type": "literal"},
    },
    "outputs": {"job_output_path": {"value": "${{parent.outputs.pipeline_job_out_file}}", "type": "literal"}},
    "componentId": f"{WS}/components/azureml_anonymous/versions/e7117621-495e-099f-08b4-79e19661e375",
    "retry_settings": {"timeout": 60, "max_retries": 2},
    "logging_level": "DEBUG",
    "mini_batch_size": 100,  # azure-ai-ml turns the "100" it was given into an integer
}
SEED_INPUTS = {
    "pipeline_job_data_path": {
        "uri": "azureml://datastores/workspaceblobstore/paths/data/iris/",
        "jobInputType": "mltable",
    },
    "pipeline_score_model": {
        "uri": "azureml://datastores/workspaceblobstore/paths/model/",
        "jobInputType": "uri_folder",
    },
}


@pytest.mark.parametrize(
    ("node", "spec", "expected"),
    [
        pytest.param(
            SEED_NODE,
            SEED_SPEC,
            ParallelTask(
                entry_script="tabular_batch_inference.py",
                input_data="job_data_path",
                program_arguments="--model ${{inputs.score_model}}",
                mini_batch_size="100",
                max_concurrency_per_instance=2,
                error_threshold=5,
                mini_batch_error_threshold=5,
                max_retries=2,
                timeout_seconds=60.0,
                logging_level="DEBUG",
                append_row_to="job_output_path",
            ),
            id="the seed's node: every setting it gives",
        ),
        pytest.param(
            {"type": "parallel"},
            SEED_SPEC,
            ParallelTask(
                entry_script="tabular_batch_inference.py",
                input_data="job_data_path",
                program_arguments="--model ${{inputs.score_model}}",
                mini_batch_size="100",
                max_concurrency_per_instance=2,
                error_threshold=5,
                mini_batch_error_threshold=5,
                max_retries=2,
                timeout_seconds=60.0,
                logging_level="DEBUG",
                append_row_to="job_output_path",
            ),
            id="a node that sets nothing takes its component's settings",
        ),
        pytest.param(
            {"type": "parallel", "max_concurrency_per_instance": 4, "retry_settings": {"max_retries": 5}},
            SEED_SPEC,
            ParallelTask(
                entry_script="tabular_batch_inference.py",
                input_data="job_data_path",
                program_arguments="--model ${{inputs.score_model}}",
                mini_batch_size="100",
                max_concurrency_per_instance=4,
                error_threshold=5,
                mini_batch_error_threshold=5,
                max_retries=5,
                timeout_seconds=60.0,
                logging_level="DEBUG",
                append_row_to="job_output_path",
            ),
            id="the node's settings win over the component's, one key at a time",
        ),
        pytest.param(
            {"type": "parallel", "partition_keys": '["region", "day"]', "mini_batch_size": 10485760},
            {"type": "parallel", "input_data": "${{inputs.d}}", "task": {"entry_script": "s.py"}},
            ParallelTask(
                entry_script="s.py",
                input_data="d",
                mini_batch_size="10485760",
                partition_keys=("region", "day"),
            ),
            id="partition keys as the JSON string a node carries; '10MB' arrives in bytes; defaults otherwise",
        ),
        pytest.param(
            {"type": "parallel"},
            {
                "type": "parallel",
                "input_data": "${{inputs.d}}",
                "task": {"entry_script": "s.py"},
                "partition_keys": ["k"],
            },
            ParallelTask(entry_script="s.py", input_data="d", partition_keys=("k",)),
            id="a component's partition keys are a list",
        ),
    ],
)
def test_parallel_node_becomes_a_parallel_task(
    node: dict[str, Any], spec: dict[str, Any], expected: ParallelTask
) -> None:
    assert parallel_task(node, spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"input_data": "${{inputs.d}}", "task": {}}, "entry_script"),  # nothing to run
        ({"input_data": "data", "task": {"entry_script": "s.py"}}, "input_data"),  # not a binding
        ({"input_data": "${{outputs.d}}", "task": {"entry_script": "s.py"}}, "input_data"),  # an output
        (
            {"input_data": "${{inputs.d}}", "task": {"entry_script": "s.py", "append_row_to": "${{inputs.d}}"}},
            "append_row_to",
        ),  # appending to an input
        (
            {"input_data": "${{inputs.d}}", "task": {"entry_script": "s.py"}, "error_threshold": "many"},
            "error_threshold",
        ),
    ],
)
def test_malformed_parallel_nodes_are_refused(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ArmError) as raised:
        parallel_task({"type": "parallel"}, spec)
    assert raised.value.status == 400
    assert message in raised.value.message


def test_seed_node_inputs_are_the_pipelines_and_its_output_is_the_pipelines() -> None:
    """``${{parent.inputs.x}}`` is the pipeline's input as it was PUT; ``${{parent.outputs.y}}`` promotes the
    node's output to the pipeline's (its declared type: the seed sets ``uri_file``)."""
    inputs = bound_inputs(SEED_NODE, SEED_SPEC, SEED_INPUTS, {})
    outputs, promoted = node_outputs(SEED_NODE, SEED_SPEC, {"pipeline_job_out_file": {"jobOutputType": "uri_file"}})

    assert inputs == {
        "job_data_path": SEED_INPUTS["pipeline_job_data_path"],
        "score_model": SEED_INPUTS["pipeline_score_model"],
    }
    assert outputs == {"job_output_path": {"jobOutputType": "uri_file"}}
    assert promoted == {"job_output_path": "pipeline_job_out_file"}


def test_node_input_bound_to_an_upstream_output_reads_its_uploaded_data() -> None:
    """``${{parent.jobs.a.outputs.data}}``: the upstream output's datastore uri, a data input of its type."""
    upstream = {
        ("a", "data"): {
            "jobOutputType": "uri_folder",
            "uri": "azureml://datastores/workspaceblobstore/paths/azureml/x/data/",
        }
    }
    node = {"inputs": {"data": {"value": "${{parent.jobs.a.outputs.data}}", "job_input_type": "literal"}}}

    assert bound_inputs(node, {}, {}, upstream) == {"data": bind_node_output(upstream[("a", "data")])}
    assert bind_node_output(upstream[("a", "data")]) == {
        "jobInputType": "uri_folder",
        "uri": "azureml://datastores/workspaceblobstore/paths/azureml/x/data/",
    }


def test_literal_inputs_defaults_and_data_inputs_in_command_job_form() -> None:
    """A literal the node sets, the component's default for one it does not, a data input given directly."""
    spec = {"inputs": {"n": {"type": "integer"}, "lr": {"type": "number", "default": 0.1}}}
    node = {
        "inputs": {
            "n": {"value": "3", "job_input_type": "literal"},
            "raw": {
                "uri": "azureml://datastores/workspaceblobstore/paths/raw/",
                "job_input_type": "uri_folder",
                "mode": "ro_mount",
            },
        }
    }

    assert bound_inputs(node, spec, {}, {}) == {
        "lr": {"jobInputType": "literal", "value": "0.1"},
        "n": {"jobInputType": "literal", "value": "3"},
        "raw": {
            "jobInputType": "uri_folder",
            "uri": "azureml://datastores/workspaceblobstore/paths/raw/",
            "mode": "ro_mount",
        },
    }


def test_command_node_becomes_a_command_jobs_properties() -> None:
    """The two-step pipeline's first node: ``resources``, ``distribution`` (``distribution_type``), ``limits``
    (``PT30S``) and ``environment_variables`` on the node, the command, code and environment on its component."""
    spec = {
        "type": "command",
        "command": "python step.py --n ${{inputs.n}} --out ${{outputs.data}}",
        "code": CODE,
        "environment": ENV,
        "resources": {"instance_count": 2},
        "distribution": {"type": "pytorch", "process_count_per_instance": 2},
        "outputs": {"data": {"type": "uri_folder"}},
    }
    node = {
        "type": "command",
        "resources": {"instance_count": 2},
        "distribution": {"process_count_per_instance": 2, "distribution_type": "PyTorch"},
        "limits": {"timeout": "PT30S", "job_limits_type": "Command"},
        "environment_variables": {"A": "1"},
    }
    component = Component(f"{WS}/components/azureml_anonymous/versions/1", spec)

    assert command_properties(node, component, CLUSTER, {"n": {"jobInputType": "literal", "value": "3"}}, {}) == {
        "jobType": "Command",
        "command": spec["command"],
        "codeId": CODE.removeprefix("azureml:"),
        "environmentId": ENV.removeprefix("azureml:"),
        "computeId": CLUSTER,
        "inputs": {"n": {"jobInputType": "literal", "value": "3"}},
        "outputs": {},
        "environmentVariables": {"A": "1"},
        "resources": {"instanceCount": 2},
        "distribution": {"distributionType": "PyTorch", "processCountPerInstance": 2},
        "limits": {"timeout": "PT30S"},
    }


def test_parallel_node_runs_its_tasks_code_with_no_command() -> None:
    component = Component(f"{WS}/components/azureml_anonymous/versions/1", SEED_SPEC)

    properties = command_properties(
        {"type": "parallel", "resources": {"instance_count": 2}}, component, CLUSTER, {}, {}
    )

    assert properties["command"] is None
    assert properties["codeId"] == CODE.removeprefix("azureml:")
    assert properties["resources"] == {"instanceCount": 2}
    assert "distribution" not in properties


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, None),
        ({"type": "mpi", "process_count_per_instance": 2}, {"distributionType": "mpi", "processCountPerInstance": 2}),
        (
            {"distribution_type": "TensorFlow", "worker_count": 2, "parameter_server_count": 1},
            {"distributionType": "TensorFlow", "workerCount": 2, "parameterServerCount": 1},
        ),
    ],
)
def test_distributions_in_command_job_form(given: dict[str, Any] | None, expected: dict[str, Any] | None) -> None:
    assert rest_distribution(given) == expected


def _node(*upstream: str) -> dict[str, Any]:
    return {"inputs": {f"i{k}": {"value": f"${{{{parent.jobs.{u}.outputs.o}}}}"} for k, u in enumerate(upstream)}}


def test_dependencies_follow_the_output_bindings() -> None:
    assert dependencies({"a": _node(), "b": _node("a"), "c": _node("a", "b")}) == {
        "a": frozenset(),
        "b": frozenset({"a"}),
        "c": frozenset({"a", "b"}),
    }


@pytest.mark.parametrize(
    ("jobs", "message"),
    [
        ({"a": _node("z")}, "unknown node"),
        ({"a": _node("b"), "b": _node("a")}, "cycle"),
    ],
)
def test_bad_graphs_are_refused(jobs: dict[str, Any], message: str) -> None:
    with pytest.raises(ArmError) as raised:
        dependencies(jobs)
    assert raised.value.status == 400
    assert message in raised.value.message


C, F, R, X = RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.RUNNING, RunStatus.CANCELED
CHAIN = {"a": frozenset[str](), "b": frozenset({"a"}), "c": frozenset[str]()}


@pytest.mark.parametrize(
    ("nodes", "continue_on_failure", "expected"),
    [
        ({"a": None, "b": None, "c": None}, False, (R, ["a", "c"])),  # the roots start together
        ({"a": R, "b": None, "c": C}, False, (R, [])),  # b waits for a
        ({"a": C, "b": None, "c": C}, False, (R, ["b"])),  # a done: b starts
        ({"a": C, "b": C, "c": C}, False, (C, [])),  # all completed
        ({"a": F, "b": None, "c": R}, False, (R, [])),  # a failed: nothing starts, c still running
        ({"a": F, "b": None, "c": None}, False, (F, [])),  # a failed, nothing running: the pipeline fails
        ({"a": F, "b": None, "c": None}, True, (R, ["c"])),  # continue: c does not read from a
        ({"a": F, "b": None, "c": C}, True, (F, [])),  # continue: b can never run; done, failed
        ({"a": X, "b": None, "c": C}, False, (F, [])),  # a canceled on its own (a timeout) is a failure
    ],
)
def test_pipeline_status(
    nodes: dict[str, RunStatus | None], continue_on_failure: bool, expected: tuple[RunStatus, list[str]]
) -> None:
    assert pipeline_status(nodes, CHAIN, continue_on_failure=continue_on_failure) == expected
