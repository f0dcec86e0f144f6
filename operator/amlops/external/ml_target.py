"""The AmlCompute a job object runs on (ParallelJob on Azure ML, CommandJob): its workspace, the credentials its
namespace may use there, and the shared Azure ML jobs adapter and listing of that workspace.

A job names an AmlCompute of its own namespace (``spec.compute.name``); the workspace and the credentials are the
AmlCompute's (its ``spec.workspace``, its ``spec.credentials`` or the namespace's default): a job cannot reach a
workspace its namespace has no AmlCompute in, nor act with credentials its namespace may not use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from amlops.api.amlcompute import AmlComputeSpec
from amlops.azure.clients import AzureClients
from amlops.azure.ml import WorkspaceId
from amlops.azure.pollers import WorkspacePoller
from amlops.external.amlcompute import workspace_of
from amlops.external.credentials import resolve
from amlops.external.ports import ObjectReader, SecretReader
from amlops.status import READY, is_true

if TYPE_CHECKING:  # azure-ai-ml is imported only on the way to an Azure ML job
    from amlops.azure.ml_jobs import MlJobs

AMLCOMPUTES = "amlcomputes"


@dataclass(frozen=True)
class MlTarget:
    """Where a job on AmlCompute ``name`` runs. ``compute``: the compute's name in the workspace (the
    AmlCompute's ``spec.computeName`` or its object name); ``ready``: the AmlCompute is Ready."""

    name: str
    compute: str
    ready: bool
    workspace: WorkspaceId
    credential_key: str
    jobs: MlJobs
    poller: WorkspacePoller
    status: dict[str, Any]


async def aml_compute(objects: ObjectReader, namespace: str, name: str) -> dict[str, Any] | None:
    """The AmlCompute object ``namespace/name`` as the apiserver has it, or None."""
    return await objects.get(AMLCOMPUTES, namespace, name)


async def ml_target(
    clients: AzureClients,
    secrets: SecretReader,
    obj: dict[str, Any],
    namespace: str,
    *,
    user: str | None = None,
) -> MlTarget:
    """The target of a job on the AmlCompute ``obj`` (an object of ``namespace``, read with :func:`aml_compute`):
    its credentials resolved for the namespace (``CredentialsMissing`` when it has none), the workspace's cached
    ``MlJobs`` and job poller, held for ``user`` (the job's uid) until the job is gone."""
    spec = AmlComputeSpec.model_validate(obj.get("spec") or {})
    status = obj.get("status") or {}
    credential = await resolve(clients, secrets, namespace, spec)
    ws = workspace_of(spec)
    jobs = await clients.ml_jobs(credential.key, ws, credential.secret, user=user)
    return MlTarget(
        name=str(obj["metadata"]["name"]),
        compute=spec.compute_name or str(obj["metadata"]["name"]),
        ready=is_true(status.get("conditions") or [], READY),
        workspace=ws,
        credential_key=credential.key,
        jobs=jobs,
        poller=clients.job_poller(credential.key, jobs, ws, user=user),
        status=status,
    )
