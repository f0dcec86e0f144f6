"""The workspace's discovery document and the run-history ``details`` of a job: what ``MLClient.jobs.stream``
reads.

azure-ai-ml 1.35.2 finds its data-plane URLs in the workspace's ``discoveryUrl`` (``_get_workspace_url``: a GET
without a token, a JSON object keyed by ``WorkspaceDiscoveryUrlKey``: ``api``, ``catalog``, ``experimentation``,
``history``, ...); all of them name this emulator. ``jobs.stream`` then polls run history's
``GET /history/v1.0/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices/
workspaces/{ws}/runs/{runId}/details`` (``_restclient/runhistory``, ``RunDetails``: ``runId``, ``status``,
``startTimeUtc``, ``endTimeUtc``, ``error`` as an ``ErrorResponse`` ``{error: {code, message}}``, ``logFiles``
name → URL, ``warnings``), prints each ``user_logs/std_log*.txt`` it finds in ``logFiles`` (downloaded from the
URL), and raises azure-ai-ml's ``JobException`` with the error when the run ``Failed``. The log URLs are SAS URLs
of the blobs ``jobs.py`` uploads while the run finalizes, so logs show once the run is Finalizing or done (Azure
streams them while it runs).

A pipeline's children live in run history only (ml/pipelines.py): ``jobs.list(parent_job_name=...)`` reads
``runs/{pipeline}/children`` (``Runs_GetChild``, a ``PaginatedRunList``) and ``jobs.get`` of a child reads
``runs/{child}`` (``Runs_GetRun``), each child a ``Run`` shaped as in the recording ``sdk/ml/azure-ai-ml/tests/
recordings/pipeline_job/e2etests/test_pipeline_job.pyTestPipelineJobLongRunningtest_pipeline_job_get_child_run.json``
(``runId``, ``parentRunId``, ``rootRunId``, ``displayName`` the node, ``name`` the component, ``runType``
``azureml.StepRun``, ``properties``/``tags`` with ``azureml.nodeid`` and ``azureml.pipeline``, ``StepType``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiohttp import web

from amlops_emulator.arm.errors import ArmError
from amlops_emulator.arm.state import Workspace
from amlops_emulator.ml.assets import default_container
from amlops_emulator.ml.execution import Run
from amlops_emulator.ml.jobs import JobRoutes, artifact_prefix
from amlops_emulator.ml.pipelines import Node, PipelineJob

DISCOVERY_PATH = "/discovery"
_RUN = (
    "/history/v1.0/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices"
    "/workspaces/{ws}/runs/{run}"
)
# The keys of azure-ai-ml's WorkspaceDiscoveryUrlKey: every data-plane service is this emulator.
_DISCOVERY_KEYS = (
    "api",
    "catalog",
    "experimentation",
    "gallery",
    "history",
    "hyperdrive",
    "labeling",
    "modelmanagement",
    "pipelines",
    "studio",
)


def add_history_routes(app: web.Application, jobs: JobRoutes) -> None:
    async def discovery(request: web.Request) -> web.Response:
        base = f"{request.scheme}://{request.host}"
        return web.json_response(dict.fromkeys(_DISCOVERY_KEYS, base))

    def view(request: web.Request) -> RunView:
        p = request.match_info
        found = run_view(jobs, jobs.ml.state.workspace(p["sub"], p["rg"], p["ws"]), p["run"])
        if found is None:
            raise ArmError(404, "UserError", f"Run {p['run']} was not found.")
        return found

    async def run_details(request: web.Request) -> web.Response:
        return web.json_response(_details(jobs, view(request)))

    async def get_run(request: web.Request) -> web.Response:
        """``Runs_GetRun`` (azure-ai-ml's ``jobs.get`` of a pipeline's child)."""
        return web.json_response(_run(view(request)))

    async def run_children(request: web.Request) -> web.Response:
        """``Runs_GetChild``: a pipeline's children (``jobs.list(parent_job_name=...)``), a
        ``PaginatedRunList``; a run without children has none."""
        parent = view(request)
        children = [] if parent.pipeline is None else _children(jobs, parent.pipeline)
        return web.json_response({"value": [_run(c) for c in children], "continuationToken": None, "nextLink": None})

    app.router.add_get(DISCOVERY_PATH, discovery)
    app.router.add_get(_RUN + "/details", run_details)
    app.router.add_get(_RUN + "/children", run_children)
    app.router.add_get(_RUN, get_run)


@dataclass(frozen=True)
class RunView:
    """What run history says of a run: a command job's, a pipeline job's or a pipeline's child's."""

    run_id: str
    ws: Workspace
    status: str
    created: datetime
    start_time: datetime | None
    end_time: datetime | None
    error: dict[str, Any] | None
    target: str
    run: Run | None = None  # the run on the compute, with its logs
    pipeline: PipelineJob | None = None  # the run is this pipeline
    parent: PipelineJob | None = None  # the run is a child of this pipeline
    node: Node | None = None


def run_view(jobs: JobRoutes, ws: Workspace, run_id: str) -> RunView | None:
    job = jobs.jobs.get(f"{ws.arm_id}/jobs/{run_id}".lower())
    if job is not None:
        run = job.run
        target = str(job.properties.get("computeId") or "").rsplit("/", 1)[-1]
        return RunView(run_id, ws, str(run.status), job.created, run.start_time, run.end_time, run.error, target, run)
    pipeline = jobs.pipelines.find(ws, run_id)
    if pipeline is not None:
        target = (pipeline.compute_id or "").rsplit("/", 1)[-1]
        return RunView(
            run_id,
            ws,
            str(pipeline.status),
            pipeline.created,
            pipeline.start_time,
            pipeline.end_time,
            pipeline.error,
            target,
            pipeline=pipeline,
        )
    child = jobs.pipelines.child(ws, run_id)
    if child is None:
        return None
    parent, node = child
    return _child_view(ws, parent, node)


def _child_view(ws: Workspace, parent: PipelineJob, node: Node) -> RunView:
    run = node.run
    compute = str(node.body.get("computeId") or parent.compute_id or "")
    created = node.submitted or parent.created
    if run is None:
        ended = created if node.error is not None else None
        status = str(node.status or "NotStarted")
        return RunView(
            node.run_id,
            ws,
            status,
            created,
            None,
            ended,
            node.error,
            compute.rsplit("/", 1)[-1],
            None,
            None,
            parent,
            node,
        )
    return RunView(
        node.run_id,
        ws,
        str(run.status),
        created,
        run.start_time,
        run.end_time,
        run.error,
        compute.rsplit("/", 1)[-1],
        run,
        None,
        parent,
        node,
    )


def _children(jobs: JobRoutes, pipeline: PipelineJob) -> list[RunView]:
    """The nodes the pipeline has made child jobs, in the order it did."""
    started = [n for n in pipeline.nodes.values() if n.submitted is not None]
    return [
        _child_view(pipeline.ws, pipeline, n) for n in sorted(started, key=lambda n: n.submitted or pipeline.created)
    ]


def _stamp(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


def _run(view: RunView) -> dict[str, Any]:
    """A run history ``Run`` (``_restclient/runhistory`` ``Run``), shaped as the recording's children."""
    body: dict[str, Any] = {
        "runId": view.run_id,
        "rootRunId": view.parent.name if view.parent is not None else view.run_id,
        "parentRunId": view.parent.name if view.parent is not None else None,
        "status": view.status,
        "createdUtc": _stamp(view.created),
        "startTimeUtc": _stamp(view.start_time),
        "endTimeUtc": _stamp(view.end_time),
        "error": {"error": view.error} if view.error is not None else None,
        "target": view.target,
        "dataContainerId": f"dcid.{view.run_id}",
        "hidden": False,
        "properties": {},
        "tags": {},
        "services": {},
        "warnings": None,
    }
    if view.node is not None and view.parent is not None:
        component = view.node.component
        step = "ParallelRunStep" if component.type == "parallel" else "PythonScriptStep"
        body |= {
            "displayName": view.node.name,
            "name": str(component.spec.get("name") or "azureml_anonymous"),
            "runType": "azureml.StepRun",
            "runTypeV2": {"traits": ["azureml.StepRun"]},
            "properties": {
                "azureml.runsource": "azureml.StepRun",
                "azureml.nodeid": view.node.name,
                "azureml.pipeline": view.parent.name,
                "azureml.pipelinerunid": view.parent.name,
                "azureml.moduleid": component.arm_id.rsplit("/", 1)[-1],
                "StepType": step,
                "ComputeTargetType": "AmlCompute",
            },
            "tags": {"azureml.nodeid": view.node.name, "azureml.pipeline": view.parent.name},
        }
    return body


def _details(jobs: JobRoutes, view: RunView) -> dict[str, Any]:
    logs: dict[str, str] = {}
    run = view.run
    if run is not None and run.logs.is_dir():
        storage = jobs.ml.storage
        container = default_container(view.ws)
        sas = storage.container_sas(container)
        for path in sorted(run.logs.rglob("*")):
            if path.is_file():
                name = f"user_logs/{path.relative_to(run.logs).as_posix()}"
                logs[name] = f"{storage.blob_url}/{container}/{artifact_prefix(view.run_id)}/{name}?{sas}"
    return {
        "runId": view.run_id,
        "target": view.target,
        "status": view.status,
        "startTimeUtc": _stamp(view.start_time),
        "endTimeUtc": _stamp(view.end_time),
        "error": {"error": view.error} if view.error is not None else None,
        "warnings": [],
        "logFiles": logs,
    }
