"""The Azure ML jobs adapter: azure-ai-ml's own ``parallel_run_function`` in a pipeline job, submitted, read and
canceled with its ``MLClient``.

Why azure-ai-ml here when ``azure/ml.py`` keeps to the management client: a parallel job exists in REST only as a
node of a pipeline job whose component azure-ai-ml registers (anonymous component, code upload, environment) before
the PUT; re-implementing that is re-implementing the SDK. Its price (``import azure.ai.ml``: ~2.3 s, ~80 MB RSS) is
paid only by an operator that has a ParallelJob on an AmlCompute: nothing imports this module at start
(tests/unit/test_lazy_imports.py).

azure-ai-ml is synchronous: every call runs in a worker thread of a pool of its own (:func:`in_ml_thread`), and the
operator's async credential is reached from there through the event loop (:class:`LoopCredential`), so one
credential (and its token cache) serves ARM, Batch and Azure ML. Not the loop's default executor: every aiohttp
request the loop makes (a token, an ARM call) first runs its ``.netrc`` and proxy lookups there
(``trust_env``), so azure-ai-ml calls that fill the default executor while they wait for a token on the loop
would wait for a thread they hold (measured: 100 ParallelJobs applied at once stalled 60 s per round,
``TOKEN_WAIT_SECONDS``, and took ~800 s to be submitted). Errors leave through the one funnel (``azure/errors.py``);
azure-ai-ml's own client-side refusals (``ValidationException`` and other ``MlException``) become
:class:`TerminalError` with reason ``InvalidSpec`` / ``UserError``.

What Azure ML writes that this reads (the emulator's ``ml/parallel.py`` cites the documentation): the parallel
child's ``logs/sys/job_report/processed_mini-batches.csv`` under ``ExperimentRun/dcid.{child}/`` of the
workspace's default datastore, one row per processing of a mini-batch, and ``logs/job_progress_overview.*.txt``
beside it (the mini-batches created so far); both while the job runs and once it has finished.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import jwt
from azure.ai.ml import MLClient
from azure.ai.ml.entities import Job, PipelineJob
from azure.ai.ml.exceptions import MlException, ValidationException
from azure.core.credentials import AccessToken
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import ClientAuthenticationError, ResourceNotFoundError
from azure.storage.blob import ContainerClient

from amlops.azure.errors import azure_errors, failure_reason
from amlops.azure.ml import WorkspaceId
from amlops.reconcile.errors import TerminalError
from amlops.reconcile.managed import OWNER_TAG
from amlops.settings import Settings

T = TypeVar("T")

PUBLIC_ARM = "https://management.azure.com"
# Azure ML's token audience (azure-ai-ml's ``_azure_environments``): azure-ai-ml asks the credential for it and
# sends the token with a pipeline job (``x-azureml-token``).
AML_RESOURCE_ID = "https://ml.azure.com/"
TERMINAL = frozenset({"Completed", "Failed", "Canceled", "NotResponding"})
ARTIFACTS = "ExperimentRun"  # a job's logs and outputs: ExperimentRun/dcid.{run}/ of the default datastore
REPORT = "logs/sys/job_report/processed_mini-batches.csv"
# azure-ai-ml's COMMON_RUNTIME_STREAM_LOG_PATTERN (``_job_ops_helper.py``): the driver logs ``jobs.stream`` shows.
DRIVER_LOG = re.compile(r"^std_log[\D]*[0]*(?:_ps)?\.txt$")
LOG_TAIL_LINES = 20
LOG_TAIL_CHARS = 4096
OVERVIEW_PREFIX = "logs/job_progress_overview."
TOKEN_WAIT_SECONDS = 60.0
# Threads for azure-ai-ml's blocking calls, process-wide. Its work is mostly Python under the GIL (schemas, entity
# conversion): more threads add no speed, only contention; a few keep requests in flight while others compute.
ML_WORKERS = 4
# The workspaces' job listings have a thread of their own: every job's status waits on its workspace's listing, which
# must not queue behind hundreds of per-job calls (500 submissions, or the reads of 500 running jobs).
LISTING_WORKERS = 1
REASON_INVALID_SPEC = "InvalidSpec"
REASON_USER_ERROR = "UserError"
REASON_AUTHENTICATION_FAILED = "AuthenticationFailed"
_AZURE_CODE = re.compile(r"^Code: ([A-Za-z][A-Za-z0-9]*)$", re.MULTILINE)
_pools: dict[str, ThreadPoolExecutor] = {}


def ml_pool(purpose: str = "jobs") -> ThreadPoolExecutor:
    """The process's pool for azure-ai-ml's calls (``"jobs"``) or its listings (``"listings"``), made on first use:
    only an operator with Azure ML jobs has them."""
    pool = _pools.get(purpose)
    if pool is None:
        workers = LISTING_WORKERS if purpose == "listings" else ML_WORKERS
        pool = _pools[purpose] = ThreadPoolExecutor(workers, thread_name_prefix=f"azure-ai-ml-{purpose}")
    return pool


async def in_ml_thread(call: Callable[[], T], purpose: str = "jobs") -> T:
    """``call()`` (azure-ai-ml's blocking work) in :func:`ml_pool`, awaited on the event loop. Calls queue in the
    order they come: a job's whole submission is one call, so jobs applied together are submitted one after
    another, each as soon as its turn comes (not all of them at the end)."""
    return await asyncio.get_running_loop().run_in_executor(ml_pool(purpose), call)


class LoopCredential:
    """A synchronous ``TokenCredential`` (what ``MLClient`` takes) over the operator's async one: each token is
    asked for on the event loop ``loop`` from the worker thread azure-ai-ml runs in."""

    def __init__(self, credential: AsyncTokenCredential, loop: asyncio.AbstractEventLoop) -> None:
        self._credential = credential
        self._loop = loop

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            # Waiting here for the loop we block would never end: azure-ai-ml must only run in a worker thread.
            raise RuntimeError("LoopCredential.get_token called on its own event loop")
        future = asyncio.run_coroutine_threadsafe(self._credential.get_token(*scopes, **kwargs), self._loop)
        return future.result(TOKEN_WAIT_SECONDS)


def cloud_options(settings: Settings, storage_suffix: str = "core.windows.net") -> dict[str, Any]:
    """MLClient keywords naming the cloud: none for Azure public cloud; else a cloud whose every ARM endpoint is
    ``settings.arm_endpoint`` (a sovereign cloud, the emulator). azure-ai-ml keeps clouds in a process-wide table
    and refuses to redefine one: the name is derived from the endpoint."""
    options: dict[str, Any] = {"enable_telemetry": False, "show_progress": False}
    if settings.ca_bundle:
        options["connection_verify"] = str(settings.ca_bundle)
    arm = settings.arm_endpoint.rstrip("/")
    if arm == PUBLIC_ARM:
        return options
    base = arm + "/"
    options["cloud"] = "Amlops" + "".join(ch for ch in arm.split("://", 1)[-1] if ch.isalnum())
    options["cloud_metadata"] = {
        "azure_portal": base,
        "resource_manager": base,
        "active_directory": settings.authority_host or base,
        "aml_resource_id": AML_RESOURCE_ID,
        "storage_endpoint": storage_suffix,
        "registry_discovery_endpoint": base,
    }
    return options


def refusal(error: MlException) -> TerminalError:
    """azure-ai-ml's refusal before or instead of a request. When it wraps Azure's own answer (it resolves the
    compute, code and environment first: "(ResourceNotFound) ... Code: ResourceNotFound"), Azure's code is the
    reason; else ``InvalidSpec`` for its validation, ``UserError`` for the rest."""
    message = _first_error(str(error.message))
    first_line = message.splitlines()[0][:1000] if message else ""
    code = _AZURE_CODE.search(message)
    if code:
        return TerminalError(*failure_reason(code.group(1), first_line))
    reason = REASON_INVALID_SPEC if isinstance(error, ValidationException) else REASON_USER_ERROR
    return TerminalError(reason, first_line)


def _first_error(message: str) -> str:
    """The first error's own message out of azure-ai-ml's JSON summary ("result": "Failed", "errors": [...])."""
    try:
        errors = json.loads(message).get("errors") or []
        return str(errors[0].get("message") or message)
    except (ValueError, AttributeError, IndexError, TypeError):
        return message


@contextmanager
def ml_errors() -> Iterator[None]:
    """azure-ai-ml's client-side refusals as the engine's TerminalError, inside the one Azure funnel."""
    with azure_errors():
        try:
            yield
        except MlException as error:
            raise refusal(error) from error
        except jwt.PyJWTError as error:
            # azure-ai-ml reads the Azure ML token's claims before it submits a pipeline job: a credential that
            # gives no JWT (a fixed AMLOPS_STATIC_TOKEN) cannot submit one, whatever is retried.
            raise TerminalError(
                REASON_AUTHENTICATION_FAILED,
                f"the credential gives no Azure ML token (a JWT for {AML_RESOURCE_ID}): {error}; use a credentials "
                "Secret's service principal or the operator's managed identity",
            ) from error


# -- what is read back -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobError:
    """Why a job failed, as Azure ML's run history says it (code and message)."""

    code: str
    message: str


@dataclass(frozen=True)
class ChildJob:
    name: str
    status: str


@dataclass(frozen=True)
class JobState:
    """A pipeline job as the ParallelJob client needs it: Azure ML's status names, the parallel child (once Azure
    created it), the outputs' URIs, and the Studio link."""

    name: str
    status: str
    child: ChildJob | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    studio_url: str | None = None
    error: JobError | None = None

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL


def status_of(job: Job) -> str:
    """A job's status in Azure ML's words ("Completed"): azure-ai-ml gives a string or its ``JobStatus`` enum."""
    status = job.status
    return str(getattr(status, "value", status))


def job_state(job: Job, children: list[Job]) -> JobState:
    """azure-ai-ml's pipeline job and its children → :class:`JobState` (pure over the entities)."""
    # The pipeline job has one node, the parallel one (external/paralleljob_aml.py): its one child.
    child = children[0] if children else None
    # The parallel node's outputs (bound to the spec's URIs), then the pipeline's own, should it declare any.
    nodes = list((getattr(job, "jobs", None) or {}).values())
    outputs: dict[str, str] = {}
    for holder in [*nodes, job]:
        for key, output in (getattr(holder, "outputs", None) or {}).items():
            path = getattr(output, "path", None)
            if isinstance(path, str) and path:
                outputs.setdefault(str(key), path)
    return JobState(
        name=str(job.name),
        status=status_of(job),
        child=ChildJob(str(child.name), status_of(child)) if child is not None else None,
        outputs=outputs,
        studio_url=job.studio_url,
    )


def job_summary(job: Job) -> dict[str, Any]:
    """One job of a listing as plain data (the shared poller keeps it by name): name, status, type ("pipeline",
    "command", ...), the compute's name (its ARM id's last segment; None when serverless), and the amlops object
    that owns it (the owner tag amlops sets, ``OWNER_TAG``; None for anyone else's job)."""
    compute = getattr(job, "compute", None)
    tags = getattr(job, "tags", None) or {}
    return {
        "name": str(job.name),
        "status": status_of(job),
        "type": str(getattr(job, "type", "") or ""),
        "compute": str(compute).rstrip("/").rsplit("/", 1)[-1] if compute else None,
        "owner": tags.get(OWNER_TAG),
        "displayName": getattr(job, "display_name", None),
    }


# -- the adapter -------------------------------------------------------------------------------------------------


class MlJobs:
    """Jobs of one workspace through one ``MLClient``; every call in a worker thread, every error through the
    funnel. Build it with :func:`connect`."""

    def __init__(self, client: MLClient) -> None:
        self._client = client
        self._store: ArtifactStore | None = None

    async def _call(self, call: Callable[[], T], purpose: str = "jobs") -> T:
        with ml_errors():
            return await in_ml_thread(call, purpose)

    async def submit(self, build: Callable[[], Job]) -> JobState:
        """Build the job (``build``: a pipeline job from external/paralleljob_aml_job.py, a command job from
        external/commandjob_aml_job.py) and create it, or return the one of that name already there (a submission
        repeated after a crash finds it: no second job is created). Building, looking and creating are one call of
        the pool: a job's submission waits for its turn once, not once per step behind every other job's."""

        def submit() -> JobState:
            job = build()
            existing = self._read(str(job.name))
            if existing is not None:
                return existing
            return job_state(self._create(job), [])

        return await self._call(submit)

    def _create(self, job: Job) -> Job:
        """``jobs.create_or_update``. A pipeline job skips its validation there: its builder ran the same check
        (``PipelineJob._validate()``, external/paralleljob_aml_job.py), whose schemas are a third of a submission's
        CPU; what create_or_update's validation adds for a pipeline job, that its compute exists, is asked here as
        it asks it (one GET; ResourceNotFound is Azure's answer). Anonymous components, code and environments are
        still resolved and checked as always. A command job's builder does not validate: create_or_update does."""
        pipeline = isinstance(job, PipelineJob)
        if pipeline and job.compute:
            self._client.compute.get(str(job.compute).rstrip("/").rsplit("/", 1)[-1])
        created: Job = self._client.jobs.create_or_update(job, skip_validation=pipeline)
        return created

    async def get(self, name: str) -> JobState | None:
        """The job with its parallel child, or None when Azure ML has no job of that name."""
        return await self._call(lambda: self._read(name))

    def _read(self, name: str) -> JobState | None:
        try:
            job = self._client.jobs.get(name)
        except ResourceNotFoundError:
            return None
        state = job_state(job, list(self._client.jobs.list(parent_job_name=name)))
        # A canceled job may say why too: Azure ML cancels a command job past its limits.timeout.
        if state.status not in ("Failed", "Canceled"):
            return state
        return replace(state, error=self._error(state.child.name if state.child else name) or self._error(name))

    def _error(self, run: str) -> JobError | None:
        """A failed run's error from run history: the jobs REST surface carries none (the swagger's job types have
        no error field); azure-ai-ml's own ``jobs.stream`` reads it there, through this same operation."""
        details = self._client.jobs._runs_operations.get_run_details(run)
        error = getattr(getattr(details, "error", None), "error", None)
        if error is None:
            return None
        return JobError(str(getattr(error, "code", None) or "UserError"), str(getattr(error, "message", "") or ""))

    async def list_jobs(self) -> list[dict[str, Any]]:
        """Every top-level job of the workspace as :func:`job_summary` plain data: one paged list call that the
        polls of many ParallelJobs and CommandJobs (and AmlCompute's ``activeRuns``) share through one
        :class:`~amlops.azure.pollers.WorkspacePoller` per workspace (``AzureClients.job_poller``)."""
        return await self._call(lambda: [job_summary(job) for job in self._client.jobs.list()], "listings")

    async def cancel(self, name: str) -> None:
        """Cancel the job; a job that has finished or is gone is left as it is (cancel is idempotent)."""

        def cancel() -> None:
            try:
                job = self._client.jobs.get(name)
            except ResourceNotFoundError:
                return
            if status_of(job) in TERMINAL:
                return
            self._client.jobs.begin_cancel(name).result()

        await self._call(cancel)

    async def report(self, child: str) -> str | None:
        """The parallel child's ``processed_mini-batches.csv`` from the workspace's default datastore (read with
        :func:`~amlops.external.paralleljob_aml.report_counts`); None until Azure ML wrote it. Azure ML uploads it
        while the job runs too (the emulator's ml/parallel.py cites why): it is the job's progress so far."""
        return await self._call(lambda: self._with_store(lambda store: store.read(f"dcid.{child}/{REPORT}")))

    async def log_tail(self, job: str, max_lines: int = LOG_TAIL_LINES) -> str | None:
        """The last ``max_lines`` lines of a job's driver log: the first ``user_logs/`` file azure-ai-ml's own
        ``jobs.stream`` would show (its ``COMMON_RUNTIME_STREAM_LOG_PATTERN``: ``std_log.txt`` of a single
        process, ``std_log_process_0.txt`` / ``_00`` of rank 0), from the job's artifact folder
        ``ExperimentRun/dcid.{job}/``. None when the job wrote none."""

        def read(store: ArtifactStore) -> str | None:
            prefix = f"dcid.{job}/user_logs/"
            names = sorted(n for n in store.names(prefix) if DRIVER_LOG.match(n[len(prefix) :]))
            text = store.read(names[0]) if names else None
            return None if text is None else last_lines(text, max_lines)

        return await self._call(lambda: self._with_store(read))

    async def overview(self, child: str) -> str | None:
        """The parallel child's latest ``logs/job_progress_overview.<yyyymmddhh>.txt`` (the largest timestamp:
        "you can check the one with the largest timestamp for the latest information", Troubleshooting
        ParallelRunStep); None until Azure ML wrote one."""

        def read(store: ArtifactStore) -> str | None:
            names = store.names(f"dcid.{child}/{OVERVIEW_PREFIX}")
            return store.read(max(names)) if names else None

        return await self._call(lambda: self._with_store(read))

    def _with_store(self, use: Callable[[ArtifactStore], T]) -> T:
        """``use`` on the workspace's artifact store, the datastore's key read once per MlJobs (two ARM calls saved
        on every read of every job); a refused key (rotated) is read again on the next call."""
        store = self._store or self._artifact_store()
        try:
            result = use(store)
        except ClientAuthenticationError:
            self._store = None
            raise
        self._store = store
        return result

    def _artifact_store(self) -> ArtifactStore:
        store = self._client.datastores.get_default(include_secrets=True)
        account = getattr(store, "account_name", None)
        container = getattr(store, "container_name", None)
        suffix = getattr(store, "endpoint", None) or "core.windows.net"
        key = getattr(getattr(store, "credentials", None), "account_key", None)
        if not (account and container and key):
            raise TerminalError(REASON_USER_ERROR, "the workspace's default datastore gives no account key")
        return ArtifactStore(ContainerClient(
            f"https://{account}.blob.{suffix}", container, credential={"account_name": account, "account_key": key}
        ))  # fmt: skip


@dataclass(frozen=True)
class ArtifactStore:
    """A job's artifacts (``ExperimentRun/dcid.{run}/...``) in the workspace's default datastore's container."""

    container: ContainerClient

    def read(self, name: str) -> str | None:
        try:
            data = self.container.download_blob(f"{ARTIFACTS}/{name}").readall()
        except ResourceNotFoundError:
            return None
        return bytes(data).decode("utf-8", "replace")

    def names(self, prefix: str) -> list[str]:
        """Names (under ``ExperimentRun/``) of the blobs starting with ``prefix``."""
        found = self.container.list_blobs(name_starts_with=f"{ARTIFACTS}/{prefix}")
        return [str(blob.name).removeprefix(f"{ARTIFACTS}/") for blob in found]


def last_lines(text: str, max_lines: int, max_chars: int = LOG_TAIL_CHARS) -> str:
    """The end of a log: its last ``max_lines`` non-empty-trailing lines, at most ``max_chars`` characters (a
    status field, so bounded whatever one line holds)."""
    tail = "\n".join(text.rstrip().splitlines()[-max_lines:])
    return tail[-max_chars:]


async def connect(credential: AsyncTokenCredential, ws: WorkspaceId, settings: Settings) -> MlJobs:
    """An :class:`MlJobs` on ``ws`` with the credential the operator resolved for the object's namespace."""
    loop = asyncio.get_running_loop()

    def build() -> MLClient:
        return MLClient(
            LoopCredential(credential, loop),
            ws.subscription_id,
            ws.resource_group,
            ws.name,
            **cloud_options(settings, settings.storage_endpoint_suffix),
        )

    with ml_errors():
        client = await in_ml_thread(build)
    return MlJobs(client)
