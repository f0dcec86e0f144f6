"""Typed models of every spec and status: the single source of truth for ``crds/`` (``amlops crdgen``).

Imports nothing of amlops but itself; no kopf, no Azure SDK.
"""

from amlops.api.amlcompute import AmlCompute, AmlComputeSpec, AmlComputeStatus
from amlops.api.batchcompute import BatchCompute, BatchComputeSpec, BatchComputeStatus
from amlops.api.commandjob import CommandJob, CommandJobSpec, CommandJobStatus
from amlops.api.kind import GROUP, VERSION, CustomResource
from amlops.api.paralleljob import ParallelJob, ParallelJobSpec, ParallelJobStatus
from amlops.api.workspacequota import WorkspaceQuota, WorkspaceQuotaSpec, WorkspaceQuotaStatus

KINDS: tuple[type[CustomResource], ...] = (AmlCompute, BatchCompute, ParallelJob, CommandJob, WorkspaceQuota)

__all__ = [
    "GROUP",
    "KINDS",
    "VERSION",
    "AmlCompute",
    "AmlComputeSpec",
    "AmlComputeStatus",
    "BatchCompute",
    "BatchComputeSpec",
    "BatchComputeStatus",
    "CommandJob",
    "CommandJobSpec",
    "CommandJobStatus",
    "CustomResource",
    "ParallelJob",
    "ParallelJobSpec",
    "ParallelJobStatus",
    "WorkspaceQuota",
    "WorkspaceQuotaSpec",
    "WorkspaceQuotaStatus",
]
