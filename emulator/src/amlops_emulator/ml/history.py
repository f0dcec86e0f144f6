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
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from amlops_emulator.arm.errors import ArmError
from amlops_emulator.arm.state import Workspace
from amlops_emulator.ml.assets import default_container
from amlops_emulator.ml.jobs import JobRoutes, artifact_prefix

DISCOVERY_PATH = "/discovery"
_RUN = (
    "/history/v1.0/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices"
    "/workspaces/{ws}/runs/{run}/details"
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

    async def run_details(request: web.Request) -> web.Response:
        p = request.match_info
        job = jobs.find(p["sub"], p["rg"], p["ws"], p["run"])
        if job is None:
            raise ArmError(404, "UserError", f"Run {p['run']} was not found.")
        return web.json_response(_details(jobs, job.ws, job.run.run_id, job.to_wire()))

    app.router.add_get(DISCOVERY_PATH, discovery)
    app.router.add_get(_RUN, run_details)


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
