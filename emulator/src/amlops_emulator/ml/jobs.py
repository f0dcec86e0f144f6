"""The workspace's jobs (``.../workspaces/{ws}/jobs/{name}``): command jobs as azure-ai-ml 1.35.2 sends them, and
pipeline jobs (``jobType: Pipeline``), which ml/pipelines.py runs, each node through :meth:`JobRoutes.start_run`,
the path a command job takes.

azure-ai-ml's ``jobs.create_or_update`` PUTs a command job at 2025-01-01-preview, ``jobs.get`` and ``jobs.list``
read at 2024-01-01-preview, ``jobs.begin_cancel`` POSTs ``cancel`` at 2023-02-01-preview (``_job_operations.py``:
``service_client_01_2025_preview``, ``service_client_01_2024_preview_arm``, ``_operation_2023_02_preview``). The
body is the swagger's ``JobBase`` with ``CommandJob`` properties (operation ids ``Jobs_CreateOrUpdate``,
``Jobs_Get``, ``Jobs_List``, ``Jobs_Cancel``).

A PUT becomes a run on the AmlCompute (``ml/execution.py``); what the job's body says maps onto it:

- ``codeId`` (a code version's ARM id): the version's ``codeUri`` in the workspace's storage account is
  downloaded, then copied into every node's working directory (the executor's ``code``).
- ``inputs`` (``ml/inputs.py``): literal values replace ``${{inputs.<name>}}`` at submission, data inputs
  (``uri_file``, ``uri_folder``, ``mltable``: datastore paths, data assets, local paths azure-ai-ml uploaded) are
  downloaded once into ``{input_root}/{job}`` and copied to every node (the executor replaces their placeholders
  per node); ``$[[...]]`` optional blocks are resolved.
- ``${{outputs.<name>}}``: replaced by the node's folder for that output, ``/mnt/azureml/cr/j/{run}/cap/
  data-capability/wd/{name}`` on Azure ML (here under the node's directory in the state dir), also in
  ``AZURE_ML_OUTPUT_<name>``. Replaced per node by the executor, since each node has its own folder.
- ``environmentVariables``, ``distribution``, ``resources.instanceCount``, ``limits.timeout`` (an ISO 8601
  duration): passed on as they are. ``environmentId`` is kept but not used: the processes run with this machine's
  interpreter, not in the environment's image.
- ``outputs.default``: the job's artifact folder as Azure reports it, ``{"jobOutputType": "uri_folder", "mode":
  "ReadWriteMount", "uri": "azureml://datastores/workspaceartifactstore/ExperimentRun/dcid.{job}"}``
  (Azure/azure-powershell ``src/MachineLearningServices/MachineLearningServices.Autorest/examples/
  Get-AzMLWorkspaceJob.md``; azure-ai-ml's ``jobs.download`` reads it to fetch the logs).
- Finalizing: each named output is uploaded to ``workspaceblobstore`` at its ``uri``; an output without one gets
  ``azureml://datastores/workspaceblobstore/paths/azureml/{job}/{output}/`` (the default path Azure ML shows for
  such an output; no public recording of it was found this session, so it is the emulator's assumption), written
  back into the job's ``outputs.<name>.uri``. The run's ``user_logs/`` and ``outputs/`` go to
  ``ExperimentRun/dcid.{job}/`` of the same container: on Azure they go to the ``workspaceartifactstore``
  datastore; the emulator serves one datastore, so they share its container. A parallel run's progress overview
  and job report are also uploaded there while it runs (ml/parallel.py cites why), replaced at each change.

Status: ``properties.status`` is the run's, with Azure ML's names. The swagger's ``CommandJob``
(``examples/Job/CommandJob/get.json``) has no start or end time and no error field: Azure keeps them in run
history (``ml/history.py`` serves a run's details, with the error, for ``jobs.stream``). The emulator also adds
``StartTimeUtc`` and ``EndTimeUtc`` to the job's ``properties.properties`` string map (its own choice, so a client
of the ARM surface alone sees them).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from amlops_emulator.arm.errors import ArmError, bad_request, resource_not_found
from amlops_emulator.arm.state import PROVIDER, Workspace
from amlops_emulator.ml.assets import (
    ARTIFACT_DATASTORE,
    DEFAULT_DATASTORE,
    default_container,
    job_resource,
    system_data,
)
from amlops_emulator.ml.execution import ParallelTask, Run, RunExecutor, RunRequest, SubmitError
from amlops_emulator.ml.inputs import fetch_inputs
from amlops_emulator.ml.pipelines import PIPELINE, PipelineJob, Pipelines

if TYPE_CHECKING:
    from amlops_emulator.arm.routes import Params, Route
    from amlops_emulator.ml.routes import MlRoutes

_WS = (
    r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.MachineLearningServices"
    r"/workspaces/(?P<ws>[^/]+)"
)
_CODE_ID = re.compile(r"/codes/(?P<name>[^/]+)/versions/(?P<version>[^/]+)$", re.IGNORECASE)
_DURATION = re.compile(
    r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)
_DATASTORE_URI = re.compile(r"^azureml://datastores/(?P<store>[^/]+)/paths/(?P<path>.*)$")
JOB_TYPE = "Command"


def parse_duration(text: str) -> float:
    """Seconds of an ISO 8601 duration as azure-ai-ml sends ``limits.timeout`` (``PT10S``, ``PT1H30M``, ``P1D``)."""
    match = _DURATION.match(text)
    if match is None or text in ("P", "PT") or text.endswith("T"):
        raise bad_request(f"'{text}' is not an ISO 8601 duration.", code="UserError")
    parts = {k: float(v) for k, v in match.groupdict().items() if v is not None}
    return timedelta(
        days=parts.get("d", 0), hours=parts.get("h", 0), minutes=parts.get("m", 0), seconds=parts.get("s", 0)
    ).total_seconds()


def artifact_prefix(job: str) -> str:
    """Where a run's ``user_logs/`` and ``outputs/`` go in the default container: ``ExperimentRun/dcid.{job}``."""
    return f"ExperimentRun/dcid.{job}"


def default_output_path(job: str, output: str) -> str:
    """The blob path of an output given no ``uri``: ``azureml/{job}/{output}`` in ``workspaceblobstore``."""
    return f"azureml/{job}/{output}"


def artifact_output(job: str) -> dict[str, Any]:
    """The ``default`` output Azure adds to a job: its artifact folder (``Get-AzMLWorkspaceJob.md``)."""
    return {
        "jobOutputType": "uri_folder",
        "mode": "ReadWriteMount",
        "uri": f"azureml://datastores/{ARTIFACT_DATASTORE}/{artifact_prefix(job)}",
    }


def _services(ws: Workspace, job: str, host: str) -> dict[str, Any]:
    """The job's endpoints as ``examples/Job/CommandJob/get.json`` shapes them (``jobServiceType``, ``endpoint``):
    Studio and Tracking, both at this emulator (azure-ai-ml's ``jobs.stream`` prints Studio's as "Web View")."""
    return {
        "Tracking": {"jobServiceType": "Tracking", "endpoint": f"azureml://{host}/mlflow/v1.0{ws.arm_id}"},
        "Studio": {"jobServiceType": "Studio", "endpoint": f"https://{host}/runs/{job}?wsid={ws.arm_id}"},
    }


class Job:
    """A submitted command job: its PUT properties and the run it became."""

    def __init__(self, ws: Workspace, name: str, properties: dict[str, Any], run: Run, created: datetime) -> None:
        self.ws, self.name, self.properties, self.run, self.created = ws, name, properties, run, created
        self.arm_id = f"{ws.arm_id}/jobs/{name}"

    def to_wire(self) -> dict[str, Any]:
        run = self.run
        return job_resource(self.arm_id, self.properties, str(run.status), (run.start_time, run.end_time), self.created)


class JobRoutes:
    def __init__(self, ml: MlRoutes, runs: RunExecutor) -> None:
        self.ml = ml
        self.runs = runs
        self.jobs: dict[str, Job] = {}  # command jobs, by lower-cased ARM id
        self.pipelines = Pipelines(self)  # pipeline jobs and their children

    def routes(self, route: Callable[..., Route]) -> list[Route]:
        return [
            route(_WS + r"/jobs", GET=("Jobs_List", self.list_jobs)),
            route(
                _WS + r"/jobs/(?P<name>[^/]+)",
                GET=("Jobs_Get", self.get_job),
                PUT=("Jobs_CreateOrUpdate", self.put_job),
            ),
            route(_WS + r"/jobs/(?P<name>[^/]+)/cancel", POST=("Jobs_Cancel", self.cancel_job)),
        ]

    def reset(self) -> None:
        self.jobs.clear()
        self.pipelines.reset()

    async def close(self) -> None:
        await self.pipelines.close()

    def _workspace(self, p: Params) -> Workspace:
        return self.ml.state.workspace(p["sub"], p["rg"], p["ws"])

    def find(self, subscription: str, resource_group: str, workspace: str, name: str) -> Job | None:
        ws = self.ml.state.workspace(subscription, resource_group, workspace)
        return self.jobs.get(f"{ws.arm_id}/jobs/{name}".lower())

    def _job(self, p: Params) -> Job | PipelineJob:
        ws = self._workspace(p)
        job = self.jobs.get(f"{ws.arm_id}/jobs/{p['name']}".lower()) or self.pipelines.find(ws, p["name"])
        if job is None:
            raise resource_not_found(f"{PROVIDER}/workspaces/jobs", f"{ws.name}/{p['name']}", ws.resource_group)
        return job

    async def get_job(self, request: web.Request, p: Params) -> web.Response:
        """``Jobs_Get``. A pipeline's child answers its envelope without ``properties``, as Azure does (the
        recording in ml/pipelines.py): azure-ai-ml then reads the child from run history."""
        ws = self._workspace(p)
        child = self.pipelines.child(ws, p["name"])
        if child is not None:
            _, node = child
            return web.json_response(
                {
                    "id": f"{ws.arm_id}/jobs/{node.run_id}",
                    "name": node.run_id,
                    "type": f"{PROVIDER}/workspaces/jobs",
                    "systemData": system_data(node.submitted or child[0].created),
                }
            )
        return web.json_response(self._job(p).to_wire())

    async def list_jobs(self, request: web.Request, p: Params) -> web.Response:
        """``Jobs_List``: azure-ai-ml sends ``listViewType`` (no job is archived here, so every view holds them
        all) and may send ``jobType`` and ``tag``; it filters on neither compute nor status."""
        ws = self._workspace(p)
        prefix = f"{ws.arm_id}/jobs/".lower()
        jobs: list[Job | PipelineJob] = [j for key, j in self.jobs.items() if key.startswith(prefix)]
        jobs += self.pipelines.of_workspace(ws)  # a pipeline's children are in run history, not here
        job_type = request.query.get("jobType")
        if job_type is not None:
            jobs = [j for j in jobs if str(j.properties.get("jobType", "")).lower() == job_type.lower()]
        tag = request.query.get("tag")
        if tag is not None:
            jobs = [j for j in jobs if tag in (j.properties.get("tags") or {})]
        return web.json_response({"value": [j.to_wire() for j in jobs], "nextLink": None})

    async def put_job(self, request: web.Request, p: Params) -> web.Response:
        """``Jobs_CreateOrUpdate``: 201 with the job on create. A second PUT of the same name changes only what
        Azure lets change on a submitted job (``tags``, ``description``, ``displayName``), 200."""
        ws = self._workspace(p)
        body = await self.ml._dispatcher._body(request)
        properties = body.get("properties")
        if not isinstance(properties, dict):
            raise bad_request("'properties' is required.", code="InvalidRequestContent")
        arm_id = f"{ws.arm_id}/jobs/{p['name']}"
        existing = self.jobs.get(arm_id.lower()) or self.pipelines.find(ws, p["name"])
        if existing is not None:
            for key in ("tags", "description", "displayName"):
                if key in properties:
                    existing.properties[key] = properties[key]
            return web.json_response(existing.to_wire(), status=200)
        if properties.get("jobType") == PIPELINE:
            pipeline = self.pipelines.submit(ws, p["name"], properties, _services(ws, p["name"], request.host))
            return web.json_response(pipeline.to_wire(), status=201)
        if properties.get("jobType") != JOB_TYPE:
            raise bad_request(
                f"The emulator runs command and pipeline jobs only, not jobType '{properties.get('jobType')}'.",
                code="UserError",
            )
        job = await self._submit(ws, p["name"], properties, request.host)
        self.jobs[arm_id.lower()] = job
        return web.json_response(job.to_wire(), status=201)

    async def _submit(self, ws: Workspace, name: str, properties: dict[str, Any], host: str) -> Job:
        run, outputs = await self.start_run(ws, name, properties)
        stored = {
            **properties,
            "outputs": {**outputs, "default": artifact_output(name)},
            "services": _services(ws, name, host),
        }
        return Job(ws, name, stored, run, self.ml.state.clock.now())

    async def start_run(
        self, ws: Workspace, name: str, properties: dict[str, Any], *, parallel: ParallelTask | None = None
    ) -> tuple[Run, dict[str, dict[str, Any]]]:
        """A run on the AmlCompute from a command job's REST properties (``command``, ``codeId``, ``computeId``,
        ``inputs``, ``outputs``, ``environmentVariables``, ``distribution``, ``resources``, ``limits``): the path
        a command job and a pipeline's node share (ml/pipelines.py turns a node into these properties). A
        parallel node brings its ``parallel`` task instead of a ``command``. Answers the run and its outputs,
        each with its ``uri``."""
        command = properties.get("command")
        compute_id = properties.get("computeId")
        if parallel is None and (not isinstance(command, str) or not command.strip()):
            raise bad_request("'command' is required.", code="UserError")
        if not isinstance(compute_id, str) or not compute_id:
            raise bad_request("'computeId' is required: the emulator runs jobs on an AmlCompute.", code="UserError")
        outputs = self._outputs(name, {k: v for k, v in (properties.get("outputs") or {}).items() if k != "default"})
        limits = properties.get("limits") or {}
        timeout = parse_duration(limits["timeout"]) if limits.get("timeout") else None
        resources = properties.get("resources") or {}
        environment = {k: str(v) for k, v in (properties.get("environmentVariables") or {}).items()}
        try:
            inputs = await fetch_inputs(self.ml, ws, properties.get("inputs") or {}, self.runs.input_root / name)
            code = await self._download_code(ws, name, properties.get("codeId"))
            request = RunRequest(
                run_id=name,
                compute_id=compute_id.removeprefix("azureml:"),
                command=inputs.render(str(command or "")),
                instance_count=int(resources.get("instanceCount") or 1),
                distribution=properties.get("distribution"),
                environment_variables={**environment, **inputs.environment},
                code=code,
                timeout_seconds=timeout,
                outputs=tuple(outputs),
                inputs=inputs.data,
                parallel=parallel,
                finalize=lambda run: self._finalize(ws, run, outputs),
                progress=lambda run, files: self._upload_progress(ws, run, files),
            )
            run = self.runs.submit(request)
        except SubmitError as exc:
            self._discard(name)
            raise ArmError(exc.status, exc.code, exc.message) from None
        except BaseException:
            self._discard(name)
            raise
        return run, outputs

    def _discard(self, job: str) -> None:
        """What a refused submission had downloaded (a run that ends has the executor remove it)."""
        for folder in (self.runs.code_root / job, self.runs.input_root / job):
            shutil.rmtree(folder, ignore_errors=True)

    def _outputs(self, job: str, outputs: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """Each output with its ``uri``: the one given (a ``workspaceblobstore`` path) or the default path."""
        resolved: dict[str, dict[str, Any]] = {}
        if outputs:
            _ = self.ml.storage  # outputs need the datastore: without one, the 409 WorkspaceStorageUnavailable now
        for name, output in outputs.items():
            output = dict(output or {})
            uri = output.get("uri")
            if uri is None:
                uri = f"azureml://datastores/{DEFAULT_DATASTORE}/paths/{default_output_path(job, name)}/"
            match = _DATASTORE_URI.match(str(uri))
            if match is None or match["store"] != DEFAULT_DATASTORE:
                raise bad_request(
                    f"Output '{name}': the emulator writes outputs to '{DEFAULT_DATASTORE}' paths only, not '{uri}'.",
                    code="UserError",
                )
            output["uri"] = uri
            resolved[name] = output
        return resolved

    async def _download_code(self, ws: Workspace, job: str, code_id: object) -> Path | None:
        """The code version's files, downloaded once for the run's life (each attempt copies them to its
        nodes; a requeued run starts again from them)."""
        if not code_id:
            return None
        match = _CODE_ID.search(str(code_id))
        version = None if match is None else self.ml.assets.find(ws, "codes", match["name"], match["version"])
        if match is None or version is None:
            raise bad_request(f"The code '{code_id}' was not found in the workspace.", code="UserError")
        storage = self.ml.storage
        container, prefix = storage.locate(str(version.body["properties"]["codeUri"]))
        target = self.runs.code_root / job
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        await storage.download(container, prefix, target)
        return target

    async def _finalize(self, ws: Workspace, run: Run, outputs: dict[str, dict[str, Any]]) -> None:
        """Outputs and logs to the datastore. Without a storage account (no ``--azurite``; a job with outputs
        was refused at submission) the logs stay in the run's directory only."""
        if self.ml._storage is None:
            return
        storage = self.ml.storage
        container = default_container(ws)
        for name, output in outputs.items():
            match = _DATASTORE_URI.match(str(output["uri"]))
            assert match is not None  # checked at submit
            folder = run.named_outputs / name
            if folder.is_dir():
                await storage.upload(folder, container, match["path"].strip("/"))
        for sub in ("user_logs", "logs", "outputs"):  # logs/: a parallel run's (ml/parallel.py)
            if (run.directory / sub).is_dir():
                await storage.upload(run.directory / sub, container, f"{artifact_prefix(run.run_id)}/{sub}")

    async def _upload_progress(self, ws: Workspace, run: Run, files: dict[str, bytes]) -> None:
        """A running parallel job's progress overview and job report to ``ExperimentRun/dcid.{job}/logs/``, where
        the final upload (:meth:`_finalize`) puts them too (ml/parallel.py says when they change)."""
        if self.ml._storage is None:
            return
        await self.ml.storage.upload_files(files, default_container(ws), f"{artifact_prefix(run.run_id)}/logs")

    async def cancel_job(self, request: web.Request, p: Params) -> web.Response:
        """``Jobs_Cancel`` (``examples/Job/cancel.json``): 202 with a ``location`` naming the job itself, which
        azure-core's ARM poller then GETs (200: done). The run goes ``CancelRequested`` → ``Canceled`` once its
        processes are killed; a queued run is ``Canceled`` at once."""
        job = self._job(p)
        if isinstance(job, PipelineJob):
            self.pipelines.cancel(job)
        else:
            try:
                self.runs.cancel(job.run.run_id)
            except SubmitError as exc:
                raise ArmError(exc.status, exc.code, exc.message) from None
        # The example's location has no query; a poller needs the api-version to GET it from this ARM.
        job_path = request.url.path.removesuffix("/").removesuffix("/cancel")
        location = request.url.with_path(job_path).with_query({"api-version": request.query["api-version"]})
        return web.Response(status=202, headers={"Location": str(location)})
