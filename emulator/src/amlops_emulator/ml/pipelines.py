"""Pipeline jobs (``jobType: Pipeline``) as azure-ai-ml 1.35.2 submits them: ``command`` and ``parallel`` nodes
that run as child jobs on the AmlCompute, in the order their data bindings give.

What azure-ai-ml sends (``_job_operations.py``: a pipeline is PUT at 2024-01-01-preview through
``service_client_01_2024_preview_arm``, with the user's Azure ML token in ``x-azureml-token``; the body is
``PipelineJob._to_rest_object``), seen on the wire from a ``@pipeline`` function of ``command(...)`` and
``parallel_run_function(...)`` nodes:

- ``properties.jobs``: node name → node. A node is azure-ai-ml's ``BaseNode._to_rest_object``: ``type``
  (``command``/``parallel``), ``componentId`` (an anonymous component version, ml/components.py), ``computeId``
  (optional), ``inputs`` and ``outputs`` in snake case (``{"value": "${{parent.inputs.n}}", "job_input_type":
  "literal"}``, ``{"job_output_type": "uri_folder"}``, ``{"value": "${{parent.outputs.model}}", "type":
  "literal"}``), a command node's ``resources``/``distribution``/``limits``/``environment_variables``, a parallel
  node's ``task``, ``input_data``, ``mini_batch_size`` (an integer: azure-ai-ml converts ``"10MB"`` to bytes),
  ``partition_keys`` (a JSON string), ``retry_settings``, ``logging_level``, ``max_concurrency_per_instance``,
  ``error_threshold``, ``mini_batch_error_threshold``. What a node leaves out comes from its component's
  ``componentSpec``.
- ``properties.inputs``/``outputs`` (camel case, as a command job's), ``computeId`` and ``settings``
  (``default_compute``, ``continue_on_step_failure``).

Bindings: ``${{parent.inputs.x}}`` is the pipeline's input ``x``; ``${{parent.outputs.y}}`` makes the node's
output the pipeline's output ``y`` (same ``uri``; given none, the node's default path, written back into the
pipeline's output); ``${{parent.jobs.<node>.outputs.<o>}}`` makes the node wait for ``<node>`` and read what it
uploaded (:func:`bind_node_output`). The graph must name known nodes and have no cycle (400 ``UserError``, the
emulator's wording).

Children: each node becomes a child job once the nodes it reads from have completed. As in the recording
``sdk/ml/azure-ai-ml/tests/recordings/pipeline_job/e2etests/test_pipeline_job.pyTestPipelineJobLongRunning
test_pipeline_job_get_child_run.json``, a child is named by a GUID and lives in run history: ``parentRunId`` the
pipeline, ``displayName`` the node's name, ``name`` the component's name, ``runType`` ``azureml.StepRun``,
``properties`` ``azureml.nodeid``/``azureml.pipeline``/``StepType``; ``jobs.list(parent_job_name=...)`` reads
``runs/{pipeline}/children``; ARM's GET of a child answers its envelope without ``properties``, which tells
azure-ai-ml to read ``runs/{child}`` from run history (``_is_pipeline_child_job``). ml/history.py serves both.
A node runs through the same path as a command job (``JobRoutes.start_run``): a command node as a command job
does, a parallel node as a run with a :class:`~amlops_emulator.ml.execution.ParallelTask`
(:func:`parallel_task`); its outputs are uploaded when it finalizes.

Status (``JobStatus`` names; the recording shows a pipeline ``Preparing``, then ``Completed``): ``NotStarted`` at
PUT, ``Running`` once its first child is submitted, then ``Completed`` when every node completed. A failed (or
timed-out) child fails the pipeline: without ``continue_on_step_failure`` the children still running are
canceled and no other node starts; with it ("whether to continue execution of other steps in the PipelineRun if
a step fails", Azure's ``AzureMLExecutePipelineActivity.ContinueOnStepFailure``) every node that does not read
from a failed one still runs, and the pipeline ends ``Failed`` once they are done. The pipeline's error names the
failed nodes (the emulator's wording, in run history's details). ``cancel``: ``CancelRequested``, every running
child is canceled, then ``Canceled``. The pipeline's ``properties.properties`` carries what the recording shows:
``azureml.runsource`` ``azureml.PipelineRun``, ``azureml.continue_on_step_failure``,
``azureml.defaultComputeName``, ``azureml.defaultDataStoreName``, ``azureml.pipelineComponent`` ``pipelinerun``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from amlops_emulator.arm.errors import ArmError, bad_request
from amlops_emulator.arm.state import Workspace
from amlops_emulator.ml.assets import DEFAULT_DATASTORE, job_resource
from amlops_emulator.ml.components import Component, find_component
from amlops_emulator.ml.execution import TERMINAL, ParallelTask, Run, RunStatus, SubmitError

if TYPE_CHECKING:
    from amlops_emulator.ml.jobs import JobRoutes

log = logging.getLogger(__name__)

PIPELINE = "Pipeline"
NODE_TYPES = ("command", "parallel")
POLL_SECONDS = 0.1  # how often a pipeline looks at its children (real time: children are real processes)
_PARENT = re.compile(r"^\$\{\{\s*parent\.(?P<scope>inputs|outputs)\.(?P<name>[^}\s]+)\s*\}\}$")
_NODE_OUTPUT = re.compile(r"^\$\{\{\s*parent\.jobs\.(?P<node>[^.}\s]+)\.outputs\.(?P<output>[^}\s]+)\s*\}\}$")
_OWN = re.compile(r"^\$\{\{\s*(?P<scope>inputs|outputs)\.(?P<name>[^}\s]+)\s*\}\}$")


# ----------------------------------------------------------------------------------------- pure: the graph


def upstream(node: Mapping[str, Any]) -> set[str]:
    """The nodes whose outputs ``node`` reads (``${{parent.jobs.<node>.outputs.<o>}}`` in its inputs)."""
    found = set()
    for value in (node.get("inputs") or {}).values():
        match = _NODE_OUTPUT.match(str((value or {}).get("value", "")))
        if match is not None:
            found.add(match["node"])
    return found


def dependencies(jobs: Mapping[str, Mapping[str, Any]]) -> dict[str, frozenset[str]]:
    """Each node's upstream nodes; 400 ``UserError`` for a binding to an unknown node or a cycle."""
    graph = {name: frozenset(upstream(node)) for name, node in jobs.items()}
    for name, ups in graph.items():
        unknown = sorted(ups - graph.keys())
        if unknown:
            raise bad_request(f"Node '{name}' reads the outputs of unknown node(s) {unknown}.", code="UserError")
    done: set[str] = set()
    remaining = dict(graph)
    while remaining:
        ready = [name for name, ups in remaining.items() if ups <= done]
        if not ready:
            raise bad_request(f"The pipeline's nodes {sorted(remaining)} form a cycle.", code="UserError")
        for name in ready:
            done.add(name)
            del remaining[name]
    return graph


def pipeline_status(
    nodes: Mapping[str, RunStatus | None], graph: Mapping[str, frozenset[str]], *, continue_on_failure: bool
) -> tuple[RunStatus, list[str]]:
    """The pipeline's status from its nodes' (None: not submitted), and the nodes to start now.

    Running while a child runs or a node can still start; then ``Failed`` if a child failed or was canceled on
    its own (a timeout), else ``Completed``. Without ``continue_on_failure`` nothing starts after a failure."""
    failed = [n for n, s in nodes.items() if s in (RunStatus.FAILED, RunStatus.CANCELED)]
    running = [n for n, s in nodes.items() if s is not None and s not in TERMINAL]
    ready = []
    if continue_on_failure or not failed:
        ready = [
            n
            for n, s in nodes.items()
            if s is None and all(nodes.get(up) == RunStatus.COMPLETED for up in graph.get(n, ()))
        ]
    if running or ready:
        return RunStatus.RUNNING, ready
    return (RunStatus.FAILED if failed else RunStatus.COMPLETED), []


# ------------------------------------------------------------------------------------ pure: a node's body


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def rest_entry(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A node's snake-case input or output (``job_input_type``, ``job_output_type``) in the camel case of a
    command job's (``jobInputType``, ``jobOutputType``)."""
    return {_camel(k): v for k, v in entry.items() if v is not None}


def bind_node_output(output: Mapping[str, Any]) -> dict[str, Any]:
    """The input a ``${{parent.jobs.<node>.outputs.<o>}}`` binding becomes: the upstream node's uploaded output
    (its datastore ``uri``, as ``jobs.py`` finalized it), a data input of the same type. This is the seam with
    the data-input resolver (``ml/inputs.py``): ``JobRoutes.start_run`` brings such an input to the node as any
    other ``azureml://datastores/...`` input."""
    return {"jobInputType": str(output.get("jobOutputType") or "uri_folder"), "uri": output["uri"]}


def bound_inputs(
    node: Mapping[str, Any],
    spec: Mapping[str, Any],
    pipeline_inputs: Mapping[str, Any],
    upstream_outputs: Mapping[tuple[str, str], Mapping[str, Any]],
) -> dict[str, dict[str, Any]]:
    """The node's inputs as a command job's REST inputs: bindings resolved, the component's defaults for the
    inputs the node does not set."""
    inputs: dict[str, dict[str, Any]] = {}
    for name, definition in (spec.get("inputs") or {}).items():
        if isinstance(definition, dict) and definition.get("default") is not None:
            inputs[name] = {"jobInputType": "literal", "value": str(definition["default"])}
    for name, entry in (node.get("inputs") or {}).items():
        value = str((entry or {}).get("value", ""))
        parent, produced = _PARENT.match(value), _NODE_OUTPUT.match(value)
        if parent is not None and parent["scope"] == "inputs":
            if parent["name"] in pipeline_inputs:
                inputs[name] = dict(pipeline_inputs[parent["name"]])
        elif produced is not None:
            inputs[name] = bind_node_output(upstream_outputs[(produced["node"], produced["output"])])
        else:
            inputs[name] = rest_entry(entry or {})
    return inputs


def node_outputs(
    node: Mapping[str, Any], spec: Mapping[str, Any], pipeline_outputs: Mapping[str, Any]
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """The node's outputs as a command job's REST outputs (every output of its component), and which of them
    are the pipeline's (node output → pipeline output)."""
    outputs: dict[str, dict[str, Any]] = {}
    for name, definition in (spec.get("outputs") or {}).items():
        kind = (definition or {}).get("type") if isinstance(definition, dict) else None
        outputs[name] = {"jobOutputType": kind or "uri_folder"}
    promoted: dict[str, str] = {}
    for name, entry in (node.get("outputs") or {}).items():
        parent = _PARENT.match(str((entry or {}).get("value", "")))
        if parent is not None and parent["scope"] == "outputs":
            promoted[name] = parent["name"]
            outputs[name] = {**outputs.get(name, {}), **dict(pipeline_outputs.get(parent["name"]) or {})}
        else:
            outputs[name] = {**outputs.get(name, {}), **rest_entry(entry or {})}
    return outputs, promoted


def rest_distribution(distribution: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A node's or component's ``distribution`` (``distribution_type`` or ``type``, snake case) as a command
    job's (``distributionType``, ``processCountPerInstance``)."""
    if not distribution:
        return None
    rest = {_camel(k): v for k, v in distribution.items() if k not in ("type", "distribution_type")}
    rest["distributionType"] = distribution.get("distribution_type") or distribution.get("type")
    return rest


def _setting(node: Mapping[str, Any], spec: Mapping[str, Any], key: str) -> Any:
    """A node's setting, else its component's."""
    value = node.get(key)
    return value if value is not None else spec.get(key)


def command_properties(
    node: Mapping[str, Any],
    component: Component,
    compute_id: str,
    inputs: Mapping[str, Any],
    outputs: Mapping[str, Any],
) -> dict[str, Any]:
    """The REST properties of the command job a node runs as (``JobRoutes.start_run`` takes them)."""
    spec = component.spec
    holder = spec.get("task") or {} if component.type == "parallel" else spec
    resources = _setting(node, spec, "resources") or {}
    limits = node.get("limits") or {}
    timeout = limits.get("timeout")
    properties: dict[str, Any] = {
        "jobType": "Command",
        "command": spec.get("command") if component.type == "command" else None,
        "codeId": component.code_id,
        "environmentId": str(holder.get("environment") or "").removeprefix("azureml:") or None,
        "computeId": compute_id,
        "inputs": dict(inputs),
        "outputs": dict(outputs),
        "environmentVariables": {
            **(holder.get("environment_variables") or {}),
            **(spec.get("environment_variables") or {}),
            **(node.get("environment_variables") or {}),
        },
        "resources": {"instanceCount": int(resources.get("instance_count") or 1)},
    }
    distribution = rest_distribution(_setting(node, spec, "distribution"))
    if distribution is not None and component.type == "command":
        properties["distribution"] = distribution
    if timeout is not None:
        properties["limits"] = {"timeout": timeout if isinstance(timeout, str) else f"PT{int(timeout)}S"}
    return properties


def _own_name(expression: object, scope: str, what: str) -> str:
    """``<name>`` of ``${{<scope>.<name>}}`` (a parallel task's ``input_data`` or ``append_row_to``)."""
    match = _OWN.match(str(expression or ""))
    if match is None or match["scope"] != scope:
        raise bad_request(f"The parallel node's {what} must be '${{{{{scope}.<name>}}}}', not '{expression}'.")
    return match["name"]


def _integer(value: object, what: str, default: int) -> int:
    if value is None:
        return default
    try:
        return int(str(value))
    except ValueError:
        raise bad_request(f"The parallel node's {what} must be an integer, not '{value}'.", code="UserError") from None


def _partition_keys(value: object) -> tuple[str, ...]:
    """azure-ai-ml sends a node's ``partition_keys`` as a JSON string, a component's as a list."""
    if value is None or value == "":
        return ()
    keys: Any = json.loads(value) if isinstance(value, str) else value
    if not isinstance(keys, list):
        raise bad_request(f"The parallel node's partition_keys must be a list, not '{value}'.", code="UserError")
    return tuple(str(k) for k in keys)


def parallel_task(node: Mapping[str, Any], spec: Mapping[str, Any]) -> ParallelTask:
    """The :class:`ParallelTask` of a parallel node: its settings, else its component's (azure-ai-ml's
    ``parallel_run_function`` puts them on both), with ParallelTask's defaults for what neither sets."""
    task = {**(spec.get("task") or {}), **(node.get("task") or {})}
    retry = {**(spec.get("retry_settings") or {}), **(node.get("retry_settings") or {})}
    entry_script = task.get("entry_script")
    if not entry_script:
        raise bad_request("The parallel node's task has no 'entry_script'.", code="UserError")
    size = _setting(node, spec, "mini_batch_size")
    append_to = task.get("append_row_to")
    threshold = "mini_batch_error_threshold"
    return ParallelTask(
        entry_script=str(entry_script),
        input_data=_own_name(_setting(node, spec, "input_data"), "inputs", "input_data"),
        program_arguments=str(task.get("program_arguments") or ""),
        mini_batch_size=None if size is None else str(size),
        partition_keys=_partition_keys(_setting(node, spec, "partition_keys")),
        max_concurrency_per_instance=_integer(
            _setting(node, spec, "max_concurrency_per_instance"), "max_concurrency_per_instance", 1
        ),
        error_threshold=_integer(_setting(node, spec, "error_threshold"), "error_threshold", -1),
        mini_batch_error_threshold=_integer(_setting(node, spec, threshold), threshold, -1),
        max_retries=_integer(retry.get("max_retries"), "retry_settings.max_retries", ParallelTask.max_retries),
        timeout_seconds=float(
            _integer(retry.get("timeout"), "retry_settings.timeout", int(ParallelTask.timeout_seconds))
        ),
        logging_level=str(_setting(node, spec, "logging_level") or "INFO"),
        append_row_to=None if not append_to else _own_name(append_to, "outputs", "append_row_to"),
    )


# ------------------------------------------------------------------------------------------- the jobs


@dataclass
class Node:
    """A pipeline's node and the child job it becomes (``run_id``, a GUID as Azure names children)."""

    name: str
    body: dict[str, Any]
    component: Component
    run_id: str
    submitted: datetime | None = None  # when the pipeline made it a child job
    run: Run | None = None
    error: dict[str, Any] | None = None  # a child refused at submission (its run never existed)
    stopped: bool = False  # canceled by its pipeline (a cancel, or another node's failure)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def status(self) -> RunStatus | None:
        """None until submitted; ``Failed`` when its submission was refused."""
        if self.run is not None:
            return self.run.status
        return RunStatus.FAILED if self.error is not None else None


@dataclass
class PipelineJob:
    ws: Workspace
    name: str
    properties: dict[str, Any]
    nodes: dict[str, Node]
    graph: dict[str, frozenset[str]]
    compute_id: str | None  # the pipeline's compute, for nodes that name none
    continue_on_failure: bool
    created: datetime
    status: RunStatus = RunStatus.NOT_STARTED
    start_time: datetime | None = None
    end_time: datetime | None = None
    error: dict[str, Any] | None = None
    cancel_requested: bool = False
    _driver: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def arm_id(self) -> str:
        return f"{self.ws.arm_id}/jobs/{self.name}"

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    def to_wire(self) -> dict[str, Any]:
        times = (self.start_time, self.end_time)
        return job_resource(self.arm_id, self.properties, str(self.status), times, self.created)


def _compute_arm_id(ws: Workspace, compute: object) -> str | None:
    """A compute named by ARM id, ``azureml:<name>`` or name, as its ARM id."""
    if not compute:
        return None
    text = str(compute).removeprefix("azureml:")
    return text if text.startswith("/") else f"{ws.arm_id}/computes/{text}"


def _run_properties(properties: Mapping[str, Any], compute_id: str | None, continue_on_failure: bool) -> dict[str, str]:
    """The pipeline's ``properties.properties``, with what Azure adds (the recording's keys)."""
    return {
        **{k: str(v) for k, v in (properties.get("properties") or {}).items()},
        "azureml.runsource": "azureml.PipelineRun",
        "runSource": "MFE",
        "azureml.continue_on_step_failure": str(continue_on_failure),
        "azureml.defaultComputeName": (compute_id or "").rsplit("/", 1)[-1],
        "azureml.defaultDataStoreName": DEFAULT_DATASTORE,
        "azureml.pipelineComponent": "pipelinerun",
    }


class Pipelines:
    """The pipeline jobs of every workspace, each driven by a task of its own until it ends."""

    def __init__(self, jobs: JobRoutes) -> None:
        self._jobs = jobs
        self.pipelines: dict[str, PipelineJob] = {}  # by lower-cased ARM id
        self.children: dict[str, tuple[PipelineJob, Node]] = {}  # by child run id

    def reset(self) -> None:
        for job in self.pipelines.values():
            if job._driver is not None:
                job._driver.cancel()
        self.pipelines.clear()
        self.children.clear()

    async def close(self) -> None:
        drivers = [j._driver for j in self.pipelines.values() if j._driver is not None]
        for driver in drivers:
            driver.cancel()
        await asyncio.gather(*drivers, return_exceptions=True)

    def find(self, ws: Workspace, name: str) -> PipelineJob | None:
        return self.pipelines.get(f"{ws.arm_id}/jobs/{name}".lower())

    def child(self, ws: Workspace, run_id: str) -> tuple[PipelineJob, Node] | None:
        found = self.children.get(run_id)
        return found if found is not None and found[0].ws.arm_id.lower() == ws.arm_id.lower() else None

    def of_workspace(self, ws: Workspace) -> list[PipelineJob]:
        prefix = f"{ws.arm_id}/jobs/".lower()
        return [j for key, j in self.pipelines.items() if key.startswith(prefix)]

    # ----------------------------------------------------------------- submission

    def submit(self, ws: Workspace, name: str, properties: dict[str, Any], services: dict[str, Any]) -> PipelineJob:
        """Check the pipeline as the service would before it starts (node types, components, computes, the
        graph), then start driving it."""
        jobs = properties.get("jobs")
        if not isinstance(jobs, dict) or not jobs:
            raise bad_request("A pipeline job needs at least one node in 'jobs'.", code="UserError")
        settings = properties.get("settings") or {}
        compute_id = _compute_arm_id(ws, properties.get("computeId") or settings.get("default_compute"))
        graph = dependencies(jobs)
        nodes = {}
        for node_name, body in jobs.items():
            nodes[node_name] = self._node(ws, node_name, body, compute_id)
        continue_on_failure = bool(settings.get("continue_on_step_failure") or False)
        stored = {
            **properties,
            "computeId": compute_id,
            "services": services,
            "properties": _run_properties(properties, compute_id, continue_on_failure),
        }
        now = self._jobs.ml.state.clock.now()
        job = PipelineJob(ws, name, stored, nodes, graph, compute_id, continue_on_failure, now)
        self.pipelines[job.arm_id.lower()] = job
        for node in nodes.values():
            self.children[node.run_id] = (job, node)
        job._driver = asyncio.get_running_loop().create_task(self._drive(job), name=f"pipeline-{name}")
        return job

    def _node(self, ws: Workspace, name: str, body: Any, compute_id: str | None) -> Node:
        if not isinstance(body, dict) or body.get("type") not in NODE_TYPES:
            kind = body.get("type") if isinstance(body, dict) else None
            raise bad_request(
                f"Node '{name}' of type '{kind}': the emulator runs command and parallel nodes only.", code="UserError"
            )
        component = find_component(self._jobs.ml.assets, ws, str(body.get("componentId") or ""))
        if component is None:
            raise bad_request(
                f"The component '{body.get('componentId')}' of node '{name}' was not found.", code="UserError"
            )
        if component.type != body["type"]:
            raise bad_request(
                f"Node '{name}' is a {body['type']} node but its component is a {component.type} component.",
                code="UserError",
            )
        if _compute_arm_id(ws, body.get("computeId")) is None and compute_id is None:
            raise bad_request(f"Node '{name}' has no compute and the pipeline no default compute.", code="UserError")
        if component.type == "parallel":
            parallel_task(body, component.spec)  # refuse a malformed task now, not when the node starts
        return Node(name, body, component, str(uuid.uuid4()))

    # ----------------------------------------------------------------- driving

    async def _drive(self, job: PipelineJob) -> None:
        try:
            while not job.done:
                self._advance(job)
                for name in self._ready(job):
                    if job.cancel_requested:
                        break
                    await self._start(job, job.nodes[name])
                self._advance(job)
                if not job.done:
                    await asyncio.sleep(POLL_SECONDS)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the emulator must not leave a pipeline running on its own fault
            log.exception("pipeline %s failed in the emulator", job.name)
            self._cancel_children(job)
            self._end(job, RunStatus.FAILED, {"code": "SystemError", "message": f"The emulator failed: {exc}"})

    def _statuses(self, job: PipelineJob) -> dict[str, RunStatus | None]:
        return {name: node.status for name, node in job.nodes.items()}

    def _ready(self, job: PipelineJob) -> list[str]:
        if job.cancel_requested or job.done:
            return []
        return pipeline_status(self._statuses(job), job.graph, continue_on_failure=job.continue_on_failure)[1]

    def _advance(self, job: PipelineJob) -> None:
        """The pipeline's status from its children's; on a failure without ``continue_on_step_failure``, the
        running children are canceled."""
        if job.done:
            return
        statuses = self._statuses(job)
        running = any(s is not None and s not in TERMINAL for s in statuses.values())
        if job.cancel_requested:
            if running:  # again each time: a node may have become a child while its code was downloading
                self._cancel_children(job)
            else:
                self._end(job, RunStatus.CANCELED, None)
            return
        status, _ = pipeline_status(statuses, job.graph, continue_on_failure=job.continue_on_failure)
        failed = [n for n, s in statuses.items() if s in (RunStatus.FAILED, RunStatus.CANCELED)]
        if failed and not job.continue_on_failure and running:
            self._cancel_children(job)
            return
        if status in TERMINAL:
            own = [n for n in failed if not job.nodes[n].stopped]
            error = None if status == RunStatus.COMPLETED else _failed_nodes_error(own)
            self._end(job, status, error)

    async def _start(self, job: PipelineJob, node: Node) -> None:
        """Make ``node`` a child job: its inputs bound to the pipeline's and to its upstream nodes' outputs."""
        now = self._jobs.ml.state.clock.now()
        node.submitted = now
        if job.status == RunStatus.NOT_STARTED:
            job.status, job.start_time = RunStatus.RUNNING, now
        spec = node.component.spec
        produced = {(n.name, out): o for n in job.nodes.values() for out, o in n.outputs.items()}
        try:
            inputs = bound_inputs(node.body, spec, job.properties.get("inputs") or {}, produced)
            outputs, promoted = node_outputs(node.body, spec, job.properties.get("outputs") or {})
            compute_id = _compute_arm_id(job.ws, node.body.get("computeId")) or job.compute_id
            assert compute_id is not None  # checked at submission
            properties = command_properties(node.body, node.component, compute_id, inputs, outputs)
            task = parallel_task(node.body, spec) if node.component.type == "parallel" else None
            node.run, node.outputs = await self._jobs.start_run(job.ws, node.run_id, properties, parallel=task)
        except ArmError as exc:
            node.error = {"code": exc.code, "message": exc.message}
            return
        for output, parent_output in promoted.items():
            declared = dict((job.properties.get("outputs") or {}).get(parent_output) or {})
            job.properties.setdefault("outputs", {})[parent_output] = {**declared, "uri": node.outputs[output]["uri"]}

    def cancel(self, job: PipelineJob) -> None:
        """``CancelRequested``, every running child canceled; ``Canceled`` once none runs (the driver sees it)."""
        if job.done or job.cancel_requested:
            return
        job.cancel_requested = True
        job.status = RunStatus.CANCEL_REQUESTED
        self._cancel_children(job)

    def _cancel_children(self, job: PipelineJob) -> None:
        for node in job.nodes.values():
            if node.run is not None and not node.run.done:
                node.stopped = True
                with contextlib.suppress(SubmitError):
                    self._jobs.runs.cancel(node.run_id)

    def _end(self, job: PipelineJob, status: RunStatus, error: dict[str, Any] | None) -> None:
        job.status, job.error, job.end_time = status, error, self._jobs.ml.state.clock.now()


def _failed_nodes_error(failed: list[str]) -> dict[str, Any]:
    nodes = ", ".join(f"/{name}" for name in sorted(failed))
    return {
        "code": "UserError",
        "message": f"Pipeline has failed child jobs. Failed nodes: {nodes}. Check the child jobs for details.",
    }
