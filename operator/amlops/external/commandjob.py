"""CommandJob's ExternalClient: one Azure ML command job per attempt, built with azure-ai-ml's ``command()`` and
submitted with its ``MLClient`` on the AmlCompute the spec names (``external/ml_target.py``).

- ``observe``: the job's status from the workspace's shared job listing (one list call per workspace per interval
  for every job object: ``AzureClients.job_poller``); the job's details (Studio link, run history's error, output
  paths, the driver log's tail) are read only once: when the job is first seen, and when it has ended. A finished
  object (Complete or Failed) is answered from its status, with no Azure call.
- ``create``: submit the current attempt (``cj-<uid>``, then ``cj-<uid>-<n>``): submitting again after a crash
  finds the job by name, never a second one.
- ``update``: the decision observe made (``commandjob_map.decide``): cancel (suspend, activeDeadlineSeconds) or
  submit the next attempt (resume).
- ``delete``: cancel the job while it runs (deletionPolicy Orphan never gets here: the engine lets the object go).
"""

from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from amlops.api.commandjob import CommandJobSpec
from amlops.azure.clients import AzureClients
from amlops.azure.errors import failure_reason
from amlops.external import commandjob_map as m
from amlops.external.code_config_map import code_files
from amlops.external.commandjob_aml import command_run, job_name
from amlops.external.ml_target import MlTarget, aml_compute, ml_target
from amlops.external.ownership import owner_exists
from amlops.external.ports import ClusterObjects, SecretReader
from amlops.reconcile import job
from amlops.reconcile.errors import RetryableError
from amlops.reconcile.external import Observation, Pending
from amlops.reconcile.managed import Managed
from amlops.status import EventRecord, now_iso

if TYPE_CHECKING:  # azure-ai-ml is imported only on the way to an Azure ML job
    from amlops.azure.ml_jobs import JobState

Mr = Managed[CommandJobSpec]

REASON_WAITING_FOR_COMPUTE = "WaitingForCompute"
REASON_LEFT_RUNNING = "JobLeftRunning"
WAIT_FOR_COMPUTE_SECONDS = 5.0


@dataclass(frozen=True)
class Step:
    """observe()'s decision for update(): the action and the attempt it acts on."""

    action: m.Action
    attempt: int


class CommandJobClient:
    def __init__(self, clients: AzureClients, secrets: SecretReader, objects: ClusterObjects) -> None:
        self._clients = clients
        self._secrets = secrets
        self._objects = objects

    async def owner_exists(self, owner: str) -> bool:
        return await owner_exists(self._objects, owner)

    async def dependents(self, mr: Mr) -> tuple[str, ...]:
        return ()

    # ------------------------------------------------------------------------------------------- observe

    async def observe(self, mr: Mr) -> Observation:
        finished = mr.status.get("phase") in job.TERMINAL
        if finished and not mr.deleting:  # Complete and Failed never change: no Azure call
            return job.finished(mr.status, mr.owner, {})
        if finished:  # an ended Azure ML job holds nothing: nothing to cancel
            return Observation(False)
        target = await self._target(mr)
        if target is None:  # deleting, and the AmlCompute is gone: its workspace cannot be reached any more
            return Observation(False, events=(self._left_behind(mr),))
        attempt = job.attempt(mr.status)
        name = job_name(mr.uid, attempt)
        _, summary = await target.poller.get(name, self._clients.settings.requeue_seconds)
        if mr.deleting:
            return self._observe_deleting(summary)
        azure_status = str(summary["status"]) if summary is not None else None
        now = datetime.now(UTC)
        started = mr.status.get("startTime")
        base: dict[str, Any] = {"azureJobName": name, "attempt": attempt, "azureStatus": azure_status}
        if summary is not None and azure_status in m.TERMINAL_STATUSES and not self._resumes(mr, azure_status):
            state = await target.jobs.get(name)
            return await self._finished(mr, target, name, state, base, job.seconds_since(started, now))
        decision = m.decide(
            m.Facts(
                azure_status=azure_status,
                phase=mr.status.get("phase"),
                suspend=mr.spec.suspend,
                deadline=mr.spec.active_deadline_seconds,
                elapsed=job.seconds_since(started, now),
            )
        )
        at_provider = {**base, "phase": decision.phase}
        if decision.action == "submit":
            # batch/v1 Job: startTime is when the job starts (again, after a resume); the deadline counts from it.
            return Observation(False, at_provider={**at_provider, "startTime": started or now_iso(now)})
        if decision.action == "resume":
            resumed = {**at_provider, "attempt": attempt + 1, "azureJobName": job_name(mr.uid, attempt + 1),
                       "azureStatus": None, "startTime": now_iso(now), "studioUrl": None}  # fmt: skip
            return self._step(mr, decision, resumed, Step("resume", attempt + 1), summary)
        if decision.action == "cancel":
            return self._step(mr, decision, at_provider, Step("cancel", attempt), summary)
        if summary is not None and not mr.status.get("studioUrl"):
            state = await target.jobs.get(name)  # once per attempt: its Studio link
            at_provider["studioUrl"] = state.studio_url if state is not None else None
        owner = summary["owner"] if summary is not None else mr.owner
        return job.settled(decision.phase, decision.reason, decision.message, at_provider, owner)

    def _resumes(self, mr: Mr, azure_status: str) -> bool:
        """The attempt was canceled by a suspend: it is no end of the object's job (decide() says what next)."""
        return azure_status == "Canceled" and (mr.spec.suspend or mr.status.get("phase") == "Suspended")

    def _step(
        self, mr: Mr, decision: m.Decision, at_provider: dict[str, Any], step: Step, summary: dict[str, Any] | None
    ) -> Observation:
        owner = summary["owner"] if summary is not None else mr.owner
        return Observation(
            True,
            resource_up_to_date=False,
            step=True,
            owner=owner,
            at_provider=at_provider,
            diff=decision.message,
            intent=step,
        )

    async def _finished(
        self, mr: Mr, target: MlTarget, name: str, state: JobState | None, base: dict[str, Any], elapsed: float | None
    ) -> Observation:
        """The attempt has ended in Azure ML: Complete or Failed, with its details read once."""
        status = state.status if state is not None else str(base["azureStatus"])
        error = failure_reason(state.error.code, state.error.message) if state and state.error else None
        decision = m.finished(status, error, mr.spec.active_deadline_seconds, elapsed)
        at_provider: dict[str, Any] = {
            **base,
            "azureStatus": status,
            "phase": decision.phase,
            "completionTime": now_iso(),
            "studioUrl": state.studio_url if state is not None else mr.status.get("studioUrl"),
            "outputs": dict(state.outputs) if state is not None else {},
        }
        if state is not None and state.error is not None:
            at_provider["error"] = {"code": state.error.code, "message": state.error.message[:4096]}
        if decision.phase == "Failed":
            at_provider["logTail"] = await target.jobs.log_tail(name)
        return job.settled(decision.phase, decision.reason, decision.message, at_provider, mr.owner)

    def _observe_deleting(self, summary: dict[str, Any] | None) -> Observation:
        """While the job runs it is there to cancel; once Azure ML has ended it (or has none), nothing is left."""
        if summary is None or summary["status"] in m.TERMINAL_STATUSES:
            return Observation(False)
        return Observation(True, owner=summary["owner"], transitional=summary["status"] == m.CANCELING)

    def _left_behind(self, mr: Mr) -> EventRecord:
        message = (
            f"the AmlCompute {mr.spec.compute} is gone: amlops cannot reach its workspace to cancel the Azure ML job "
            f"{job_name(mr.uid, job.attempt(mr.status))} if it still runs"
        )
        return EventRecord("Warning", REASON_LEFT_RUNNING, message)

    # ------------------------------------------------------------------------------------------- writes

    async def create(self, mr: Mr) -> Pending | None:
        await self._submit(mr, job.attempt(mr.status))
        return None

    async def update(self, mr: Mr, observation: Observation) -> Pending | None:
        step = observation.intent
        if not isinstance(step, Step):
            return None
        if step.action == "cancel":
            await self._cancel(mr, job_name(mr.uid, step.attempt))
        elif step.action == "resume":
            await self._submit(mr, step.attempt)
        return None

    async def delete(self, mr: Mr) -> Pending | None:
        await self._cancel(mr, job_name(mr.uid, job.attempt(mr.status)))
        return None

    async def _cancel(self, mr: Mr, name: str) -> None:
        target = await self._target(mr)
        if target is None:
            return
        await target.jobs.cancel(name)
        target.poller.invalidate(name)

    async def _submit(self, mr: Mr, attempt: int) -> None:
        """Build ``command()`` and submit it as ``attempt``'s job (found by name if it was submitted before)."""
        target = await self._target(mr)
        if target is None:
            return
        if not target.ready:
            raise RetryableError(
                REASON_WAITING_FOR_COMPUTE,
                f"waiting for AmlCompute {target.name} to be Ready",
                WAIT_FOR_COMPUTE_SECONDS,
            )
        from amlops.external.commandjob_aml_job import build_command_job  # azure-ai-ml: only on the way to a job

        name = job_name(mr.uid, attempt)
        with tempfile.TemporaryDirectory(prefix="amlops-cj-") as folder:
            local = await self._code_folder(mr, Path(folder))
            run = command_run(mr.spec, name, target.compute, mr.owner, local_code=local)
            # Built in the submission's own call (azure-ai-ml's pool); it uploads the folder: it must still exist here
            await target.jobs.submit(functools.partial(build_command_job, run))
        target.poller.invalidate(name)

    async def _code_folder(self, mr: Mr, folder: Path) -> str | None:
        """codeConfigMap's files written to ``folder/<ConfigMap name>`` (azure-ai-ml uploads the folder as the
        job's code); None when the spec names remote code."""
        name = mr.spec.code_config_map
        if name is None:
            return None
        files = await code_files(self._objects, mr.namespace, name, "codeConfigMap")
        root = folder / name
        root.mkdir()
        for key, data in files.items():
            (root / key).write_bytes(data)  # a ConfigMap key is a file name: no '/', never '.' or '..'
        return str(root)

    async def _target(self, mr: Mr) -> MlTarget | None:
        """The AmlCompute the job runs on. Missing: wait for it (Reconciling), or when deleting, None."""
        obj = await aml_compute(self._objects, mr.namespace, mr.spec.compute)
        if obj is None:
            if mr.deleting:
                return None
            raise RetryableError(
                REASON_WAITING_FOR_COMPUTE,
                f"AmlCompute {mr.namespace}/{mr.spec.compute} does not exist",
                WAIT_FOR_COMPUTE_SECONDS,
            )
        return await ml_target(self._clients, self._secrets, obj, mr.namespace, user=mr.uid)
