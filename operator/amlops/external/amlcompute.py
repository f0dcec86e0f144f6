"""AmlCompute's ExternalClient: observe through the shared workspace poller, PUT to create, PATCH to scale,
DELETE with ``underlyingResourceAction=Delete``. The mappings are pure (``amlcompute_map``)."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from amlops import metrics
from amlops.api.amlcompute import AmlComputeSpec
from amlops.azure.clients import AzureClients
from amlops.azure.errors import VM_SIZE_NOT_AVAILABLE
from amlops.azure.ml import MlClient, WorkspaceId
from amlops.external import amlcompute_map as m
from amlops.external import amlcompute_observe as o
from amlops.external import amlcompute_recreate as r
from amlops.external.backends import AZURE_ML, command_jobs_on, parallel_jobs_on
from amlops.external.compute_arm import foreign_type, owner_of
from amlops.external.credentials import connect, resolve, secret_value
from amlops.external.ownership import owner_exists
from amlops.external.ports import ObjectReader, SecretReader, SecretVersion
from amlops.reconcile.errors import ReconcileError, TerminalError
from amlops.reconcile.external import Observation, Pending
from amlops.reconcile.managed import Managed
from amlops.status import ConditionUpdate, now_iso

REASON_VM_SIZE_NOT_AVAILABLE = VM_SIZE_NOT_AVAILABLE  # the same reason as Azure's own refusal of a size
REASON_SECRET_MISSING = "SecretNotFound"

Mr = Managed[AmlComputeSpec]
log = logging.getLogger(__name__)


def compute_name(mr: Mr) -> str:
    return mr.spec.compute_name or mr.name


def workspace_of(spec: Any) -> WorkspaceId:
    return WorkspaceId(spec.workspace.subscription_id, spec.workspace.resource_group, spec.workspace.name)


async def read_compute(
    clients: AzureClients,
    key: str,
    ml: MlClient,
    mr: Managed[Any],
    name: str,
    max_age: float,
    *,
    trust_absence: bool = False,
) -> dict[str, Any] | None:
    """Compute ``name`` of ``mr``'s workspace: from the shared listing when it is at most ``max_age`` old, by its
    own GET when a refresh is asked for (``amlops.io/reconcile-requested-at``, the seed's ``refresh_state()``)
    or when the listing lacks it (it may be a poll interval old: absence is confirmed before anything is
    created), unless ``trust_absence`` (the listing was asked to be fresh). The poller keeps what a GET read,
    fresher than its listing."""
    ws = workspace_of(mr.spec)
    poller = clients.workspace_poller(key, ml, ws, user=mr.uid)
    body = None
    if not mr.refresh_requested:
        _, body = await poller.get(name, max_age)
        if body is None and trust_absence:
            return None
    if body is None:
        body = await ml.get_compute(ws, name)
        poller.remember(name, body)
    return body


class AmlComputeClient:
    def __init__(self, clients: AzureClients, secrets: SecretReader, objects: ObjectReader) -> None:
        self._clients = clients
        self._secrets = secrets
        self._objects = objects

    async def _location(self, ml: MlClient, mr: Mr) -> str:
        if mr.spec.location:
            return mr.spec.location
        ws = workspace_of(mr.spec)
        return await self._clients.locations.workspace_location(ml, ws)

    async def _preflight(
        self, ml: MlClient, mr: Mr, location: str
    ) -> tuple[dict[str, Any] | None, tuple[bool, str] | None]:
        """The VM size exists in the location (else Stalled) and the family's quota: (quota status, verdict).
        The headroom is exported as a metric whoever asks.

        Only a shortcut: Azure judges the size itself when it creates (a failed create, Stalled with the same
        reason). So a size list that cannot be read does not hold the create back: it gives no verdict."""
        sizes = await self._size_list(ml, location)
        # Only the subscription's rows bound a new cluster (m.usage_row); filtered once per reading.
        usages = await self._clients.locations.usages_where(ml, location, m.subscription_row)
        quota, size_error, sufficient = m.quota_check(mr.spec, sizes, usages)
        if size_error:
            raise TerminalError(REASON_VM_SIZE_NOT_AVAILABLE, size_error)
        if quota and "limit" in quota:
            metrics.QUOTA_HEADROOM_CORES.labels(ml.subscription_id, location, quota["family"]).set(
                quota["limit"] - quota["usage"]
            )
        return quota, sufficient

    async def _size_list(self, ml: MlClient, location: str) -> list[dict[str, Any]]:
        try:
            body = await self._clients.locations.vm_sizes(ml, location)
        except ReconcileError as error:
            log.warning("vmSizes in %s could not be read (%s); Azure will judge the size itself", location, error)
            return []
        return m.vm_sizes_of(body)

    def _poller_max_age(self, mr: Mr) -> float:
        s = self._clients.settings
        state = str(mr.status.get("provisioningState") or "").lower()
        converging = mr.status.get("pendingOperation") or state in m.TRANSITIONAL_PROVISIONING or state == ""
        # A re-create waiting for idle nodes looks often: the nodes' jobs may end at any moment.
        converging = converging or mr.status.get("recreating")
        resizing = str(mr.status.get("allocationState") or "").lower() == "resizing"
        return s.poll_floor_seconds if converging or resizing else s.poll_ceiling_seconds

    async def observe(self, mr: Mr) -> Observation:
        key, ml = await connect(self._clients, self._secrets, mr.namespace, mr.spec, mr.uid)
        ws = workspace_of(mr.spec)
        name = compute_name(mr)
        fresh = _never_observed(mr.status)
        # A new object learns whether its compute exists from a listing at most a poll floor old, shared by every
        # new object of the workspace (one listing of twenty pages for a thousand of them, not a thousand 404
        # GETs from the subscription's read budget). A foreign compute of the same name created in those seconds
        # is the same race a GET has between its answer and the PUT, only longer by the floor.
        max_age = self._clients.settings.poll_floor_seconds if fresh else self._poller_max_age(mr)
        body = await read_compute(self._clients, key, ml, mr, name, max_age, trust_absence=fresh)
        location = (body or {}).get("location") or await self._location(ml, mr)
        # The size and quota pre-flight judges a create or an update; a deletion needs neither (an unknown vmSize
        # would otherwise keep the finalizer of an object that never created anything).
        quota, sufficient = (None, None) if mr.deleting else await self._preflight(ml, mr, location)
        sync: dict[str, Any] = {"lastSyncTime": now_iso(), "quota": quota}
        # Azure sets the admin password only at creation: before it, the Secret's version a create uses now is
        # recorded; after it, compared with the Secret's now (AdminCredentialsCurrent). A create reads the Secret
        # again: a change in between can only make the condition call a password not applied that was, never the
        # other way round.
        secret = None if mr.deleting else await self._admin_password_secret(mr)
        observation = await self._observed(ml, mr, body, sync, o.quota_condition(sufficient), secret)
        if observation.intent == o.RECREATE and not fresh:
            # The cluster is to be deleted (updatePolicy Recreate): decided on the listing, which may be a poll
            # interval old, and a job that started since must not lose its node. Decided again on a GET.
            body = await ml.get_compute(ws, name)
            self._clients.workspace_poller(key, ml, ws, user=mr.uid).remember(name, body)
            observation = await self._observed(ml, mr, body, sync, o.quota_condition(sufficient), secret)
        if mr.spec.report_active_runs and body is not None and not mr.deleting:
            runs = await self._active_runs(mr, name)
            observation = replace(observation, at_provider={**observation.at_provider, "activeRuns": runs})
        return observation

    async def _active_runs(self, mr: Mr, name: str) -> list[dict[str, Any]]:
        """The jobs queued or running on the cluster, from the workspace's job listing that the job objects of
        the same credentials share (one list call per workspace per interval)."""
        credential = await resolve(self._clients, self._secrets, mr.namespace, mr.spec)
        ws = workspace_of(mr.spec)
        jobs = await self._clients.ml_jobs(credential.key, ws, credential.secret, user=mr.uid)
        poller = self._clients.job_poller(credential.key, jobs, ws, user=mr.uid)
        return o.active_runs(await poller.items(self._poller_max_age(mr)), name)

    async def _observed(
        self,
        ml: MlClient,
        mr: Mr,
        body: dict[str, Any] | None,
        sync: dict[str, Any],
        quota: ConditionUpdate | None,
        secret: tuple[str, SecretVersion | None] | None,
    ) -> Observation:
        """The observation of the compute Azure answered ``body`` for (None: absent)."""
        if body is None:
            if secret is not None:
                sync = {**sync, o.ADMIN_PASSWORD_SECRET: o.secret_record(*secret)}
            return o.observation(mr.spec, None, sync=sync, quota=quota, status=mr.status, deleting=mr.deleting)
        if (other := foreign_type(body, "AmlCompute")) is not None:
            return Observation(True, foreign_type=other, owner=owner_of(body))
        ws, name = workspace_of(mr.spec), compute_name(mr)
        pending = _pending_from(mr.status)
        state = None
        if pending is not None and o.needs_operation_state(pending, body):
            state = await ml.operation_state(ws, name, pending)
        progress = o.progress(pending, body, state)
        nodes = None
        if o.reports_nodes(mr.spec, progress.transitional):
            nodes = await ml.list_nodes(ws, name, self._clients.settings.nodes_report_limit)
        return o.observation(
            mr.spec,
            body,
            sync=sync,
            quota=quota,
            progress_=progress,
            nodes=nodes,
            admin=o.admin_credentials_condition(mr.status.get(o.ADMIN_PASSWORD_SECRET), *secret) if secret else None,
            status=mr.status,
            deleting=mr.deleting,
        )

    async def create(self, mr: Mr) -> Pending | None:
        key, ml = await connect(self._clients, self._secrets, mr.namespace, mr.spec, mr.uid)
        ws = workspace_of(mr.spec)
        password = await self._admin_password(mr)
        body = m.to_arm(mr.spec, owner=mr.owner, location=await self._location(ml, mr), admin_password=password)
        # The record of the create-only values travels in the same PUT as the cluster (updatePolicy Recreate).
        body["tags"] = {**body["tags"], **r.create_tags(mr.spec)}
        pending = await ml.begin_put_compute(ws, compute_name(mr), body)
        self._clients.workspace_poller(key, ml, ws, user=mr.uid).invalidate(compute_name(mr))
        return pending

    async def update(self, mr: Mr, observation: Observation) -> Pending | None:
        if observation.intent == o.RECREATE:
            return await self._recreate(mr)
        key, ml = await connect(self._clients, self._secrets, mr.namespace, mr.spec, mr.uid)
        ws = workspace_of(mr.spec)
        body = await ml.get_compute(ws, compute_name(mr))
        if body is None:
            return None
        patch, _ = m.diff(mr.spec, body)
        if not patch:
            return None
        pending = await ml.begin_patch_compute(ws, compute_name(mr), patch)
        self._clients.workspace_poller(key, ml, ws, user=mr.uid).invalidate(compute_name(mr))
        return pending

    async def _recreate(self, mr: Mr) -> Pending | None:
        """updatePolicy Recreate, no node busy (``observe`` decided it on a fresh GET): DELETE the old cluster;
        once Azure has it gone, the engine creates the new one (the cluster absent). A crash after this DELETE
        finds the cluster Deleting or gone, never the DELETE to send again."""
        pending = await self.delete(mr)
        metrics.COMPUTE_RECREATES.labels(mr.namespace, mr.name).inc()
        return pending

    async def delete(self, mr: Mr) -> Pending | None:
        key, ml = await connect(self._clients, self._secrets, mr.namespace, mr.spec, mr.uid)
        ws = workspace_of(mr.spec)
        pending = await ml.begin_delete_compute(ws, compute_name(mr), "Delete")
        self._clients.workspace_poller(key, ml, ws, user=mr.uid).invalidate(compute_name(mr))
        return pending

    async def owner_exists(self, owner: str) -> bool:
        return await owner_exists(self._objects, owner)

    async def dependents(self, mr: Mr) -> tuple[str, ...]:
        """The ParallelJobs and CommandJobs of this namespace whose Azure ML jobs run on this cluster: each cancels
        its job with the credentials this AmlCompute gives it before the cluster (and its access) goes."""
        parallel = parallel_jobs_on(await self._objects.list("paralleljobs", mr.namespace), mr.name, AZURE_ML)
        return parallel + command_jobs_on(await self._objects.list("commandjobs", mr.namespace), mr.name)

    async def _admin_password_secret(self, mr: Mr) -> tuple[str, SecretVersion | None] | None:
        """The name and version of the admin password's Secret (None in the tuple when it does not exist); None
        without one."""
        user = mr.spec.admin_user
        if user is None or user.password_secret_ref is None:
            return None
        name = user.password_secret_ref.name
        return name, await self._secrets.version(mr.namespace, name)

    async def _admin_password(self, mr: Mr) -> str | None:
        user = mr.spec.admin_user
        if user is None or user.password_secret_ref is None:
            return None
        ref = user.password_secret_ref
        return await secret_value(self._secrets, mr.namespace, ref.name, ref.key, REASON_SECRET_MISSING)


def _never_observed(status: Any) -> bool:
    """No pass has seen this object's compute in Azure, nor created it."""
    return not (status.get("resourceId") or status.get("provisioningState") or status.get("pendingOperation"))


def _pending_from(status: Any) -> Pending | None:
    raw = status.get("pendingOperation") if status else None
    if not raw or not raw.get("name"):
        return None
    return Pending(str(raw["name"]), raw.get("token"), raw.get("startedAt"))
