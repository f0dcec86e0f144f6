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
from typing import Any

from aiohttp import web

from amlops_emulator.arm.errors import ArmError
from amlops_emulator.arm.state import Workspace
from amlops_emulator.ml.assets import default_container, workspace_guid
from amlops_emulator.ml.inputs import datastore_path
from amlops_emulator.ml.jobs import Job, JobRoutes, artifact_prefix

DISCOVERY_PATH = "/discovery"
_WS = "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices/workspaces/{ws}"
_RUN = "/history/v1.0" + _WS + "/runs/{run}/details"
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

    async def run_details(request: web.Request) -> web.Response:
        p = request.match_info
        job = jobs.find(p["sub"], p["rg"], p["ws"], p["run"])
        if job is None:
            raise ArmError(404, "UserError", f"Run {p['run']} was not found.")
        return web.json_response(_details(jobs, job.ws, job.run.run_id, job.to_wire()))

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
    app.router.add_get(_RUN, run_details)
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
    details = _details(jobs, job.ws, job.run.run_id, job.to_wire())
    outputs = {
        name: {"assetId": output_asset_id(job.ws, job.name, name), "type": _kind(output)}
        for name, output in (job.properties.get("outputs") or {}).items()
        if name != "default" and job.run.done
    }
    return {key: details[key] for key in ("runId", "target", "status", "startTimeUtc", "endTimeUtc", "error")} | {
        "outputs": outputs
    }


def _details(jobs: JobRoutes, ws: Workspace, run_id: str, wire: dict[str, Any]) -> dict[str, Any]:
    run = jobs.runs.get(run_id)
    assert run is not None
    storage = jobs.ml.storage
    container = default_container(ws)
    sas = storage.container_sas(container)
    logs: dict[str, str] = {}
    if run.logs.is_dir():
        for path in sorted(run.logs.rglob("*")):
            if path.is_file():
                name = f"user_logs/{path.relative_to(run.logs).as_posix()}"
                logs[name] = f"{storage.blob_url}/{container}/{artifact_prefix(run_id)}/{name}?{sas}"
    stamp = wire["properties"]["properties"]
    return {
        "runId": run_id,
        "target": wire["properties"].get("computeId", "").rsplit("/", 1)[-1],
        "status": str(run.status),
        "startTimeUtc": stamp.get("StartTimeUtc"),
        "endTimeUtc": stamp.get("EndTimeUtc"),
        "error": {"error": run.error} if run.error is not None else None,
        "warnings": [],
        "logFiles": logs,
    }
