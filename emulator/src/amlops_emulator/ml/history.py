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

``MLClient.jobs.download(name, download_path, output_name=..., all=...)`` (``_job_operations.download``) reads the
job (ARM), then run history's ``POST .../rundata`` (``RunOperations.get_run_data``: ``runMetadata.outputs``, name →
``{assetId, type}``), resolves the data assets among them with the data plane's ``POST /data/v1.0/.../dataversion/
batchGetResolvedUris`` (``{"values": [assetId]}`` → ``{"values": {assetId: {uri, type}}}``, the URIs "in the
long-form azureml:// format", ``_job_ops_helper.get_job_output_uris_from_dataplane``), takes the artifact folder
from the job's ``outputs.default`` and downloads each URI's datastore path (datastore GET, ``listSecrets``, blob
listing) into ``{download_path}/named-outputs/{output}/`` and ``{download_path}/artifacts/``. A named output's
asset id is ``azureml://locations/{location}/workspaces/{workspaceId}/data/azureml_{job}_output_data_{output}/
versions/1``, the form Azure registers job outputs under (Azure/azureml-assets parses it with
``azureml://locations/.+/workspaces/.+/(.+)/azureml_(.+)_output_(.+)/versions/(.+)``, dropping ``data_``). Outputs are
listed once the run has ended (they are uploaded while it finalizes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiohttp import web

from amlops_emulator.arm.errors import ArmError
from amlops_emulator.arm.state import Workspace
from amlops_emulator.ml.assets import default_container, stamp, workspace_guid
from amlops_emulator.ml.execution import Run
from amlops_emulator.ml.inputs import datastore_path
from amlops_emulator.ml.jobs import Job, JobRoutes, artifact_prefix
from amlops_emulator.ml.pipelines import Node, PipelineJob

DISCOVERY_PATH = "/discovery"
_WS = "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices/workspaces/{ws}"
_RUN = "/history/v1.0" + _WS + "/runs/{run}"
_RUN_DATA = "/history/v1.0" + _WS + "/rundata"
_RESOLVE = "/data/v1.0" + _WS + "/dataversion/batchGetResolvedUris"
_OUTPUT_ASSET = re.compile(r"/data/azureml_(?P<job>.+)_output_data_(?P<output>[^/]+)/versions/1$")
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

    async def run_data(request: web.Request) -> web.Response:
        p = request.match_info
        body = await request.json()
        run_id = str(body.get("runId") or "")
        job = jobs.find(p["sub"], p["rg"], p["ws"], run_id)
        if job is None:
            raise ArmError(404, "UserError", f"Run {run_id} was not found.")
        return web.json_response({"runMetadata": _run_metadata(jobs, job), "runDefinition": None})

    async def resolve_uris(request: web.Request) -> web.Response:
        p = request.match_info
        body = await request.json()
        resolved: dict[str, Any] = {}
        for asset_id in body.get("values") or []:
            match = _OUTPUT_ASSET.search(str(asset_id))
            job = None if match is None else jobs.find(p["sub"], p["rg"], p["ws"], match["job"])
            if job is not None and match is not None:
                output = (job.properties.get("outputs") or {}).get(match["output"])
                if output is not None:
                    resolved[asset_id] = {"uri": _long_uri(job.ws, str(output["uri"])), "type": _kind(output)}
        return web.json_response({"values": resolved})

    app.router.add_get(DISCOVERY_PATH, discovery)
    app.router.add_get(_RUN + "/details", run_details)
    app.router.add_get(_RUN + "/children", run_children)
    app.router.add_get(_RUN, get_run)
    app.router.add_post(_RUN_DATA, run_data)
    app.router.add_post(_RESOLVE, resolve_uris)


def output_asset_id(ws: Workspace, job: str, output: str) -> str:
    """The data asset Azure registers a job's named output as (module doc)."""
    return (
        f"azureml://locations/{ws.location}/workspaces/{workspace_guid(ws)}/data/azureml_{job}_output_data_{output}"
        "/versions/1"
    )


def _kind(output: dict[str, Any]) -> str:
    return str(output.get("jobOutputType") or "uri_folder")


def _long_uri(ws: Workspace, uri: str) -> str:
    """A short ``azureml://datastores/{store}/paths/{path}`` in the long form the data plane answers."""
    found = datastore_path(uri)
    if found is None:
        return uri
    store, path = found
    return (
        f"azureml://subscriptions/{ws.subscription}/resourcegroups/{ws.resource_group}/workspaces/{ws.name}"
        f"/datastores/{store}/paths/{path}"
    )


def _run_metadata(jobs: JobRoutes, job: Job) -> dict[str, Any]:
    """Run history's ``Run`` of a job: its details, with the named outputs once it has ended."""
    details = _details(jobs, run_view(jobs, job.ws, job.name) or _missing(job.name))
    outputs = {
        name: {"assetId": output_asset_id(job.ws, job.name, name), "type": _kind(output)}
        for name, output in (job.properties.get("outputs") or {}).items()
        if name != "default" and job.run.done
    }
    return {key: details[key] for key in ("runId", "target", "status", "startTimeUtc", "endTimeUtc", "error")} | {
        "outputs": outputs
    }


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


def _run(view: RunView) -> dict[str, Any]:
    """A run history ``Run`` (``_restclient/runhistory`` ``Run``), shaped as the recording's children."""
    body: dict[str, Any] = {
        "runId": view.run_id,
        "rootRunId": view.parent.name if view.parent is not None else view.run_id,
        "parentRunId": view.parent.name if view.parent is not None else None,
        "status": view.status,
        "createdUtc": stamp(view.created),
        "startTimeUtc": stamp(view.start_time),
        "endTimeUtc": stamp(view.end_time),
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
        "startTimeUtc": stamp(view.start_time),
        "endTimeUtc": stamp(view.end_time),
        "error": {"error": view.error} if view.error is not None else None,
        "warnings": [],
        "logFiles": logs,
    }


def _missing(run_id: str) -> RunView:
    raise ArmError(404, "UserError", f"Run {run_id} was not found.")
