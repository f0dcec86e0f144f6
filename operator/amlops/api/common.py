"""Building blocks shared by the three kinds: workspace and credential references, policies, conditions."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class ApiModel(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields ignored (the apiserver prunes them anyway)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


ManagementPolicy = Literal["Manage", "ObserveOnly"]
ConditionStatus = Literal["True", "False", "Unknown"]

AZURE_NAME = r"^[a-zA-Z0-9][a-zA-Z0-9_.()-]{0,89}$"
SUBSCRIPTION_ID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


class WorkspaceRef(ApiModel):
    """The Azure Machine Learning workspace (azureml-core ``Workspace(subscription_id, resource_group, name)``)."""

    subscription_id: str = Field(
        pattern=SUBSCRIPTION_ID, description="Azure subscription id (a GUID) of the workspace."
    )
    resource_group: str = Field(
        pattern=AZURE_NAME, max_length=90, description="Resource group that holds the workspace."
    )
    name: str = Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_-]{2,32}$", description="Name of the Azure ML workspace.")


class SecretRef(ApiModel):
    name: str = Field(min_length=1, max_length=253, description="Name of a Secret in the resource's namespace.")


class Credentials(ApiModel):
    """Where the operator gets an Azure credential for this resource."""

    secret_ref: SecretRef | None = Field(
        default=None,
        description=(
            "Secret with AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET (a service principal). "
            "Absent: the operator's own credential (workload identity in AKS, environment elsewhere)."
        ),
    )


class Condition(ApiModel):
    """A kstatus-style condition; ``type`` is one of Ready, Reconciling, Stalled (and job kinds' own)."""

    type: str = Field(description="Ready, Reconciling, Stalled, and for jobs Running, Complete, Failed, Suspended.")
    status: ConditionStatus
    reason: str = Field(description="PascalCase: Azure's error code when Azure gave one, else amlops' own.")
    message: str = ""
    last_transition_time: datetime
    observed_generation: int | None = None


class PendingOperation(ApiModel):
    """A long-running Azure operation in flight; a restarted operator resumes it instead of writing again."""

    name: str = Field(description="create, update or delete.")
    token: str | None = Field(default=None, description="azure-core LRO continuation token.")
    started_at: str | None = Field(default=None, description="When the operation started.")


class UpdateAttempts(ApiModel):
    """Updates made for one diff of one generation; past a few, the diff is one that never converges."""

    diff_hash: str = Field(description="Hash of the difference the updates tried to remove.")
    generation: int = Field(description="metadata.generation the updates were made for.")
    count: int = Field(description="Updates made for that difference so far.")


class StatusBase(ApiModel):
    """Fields every kind's status carries (the Argo CD / Flux contract, design.md §3)."""

    observed_generation: int | None = Field(
        default=None, description="metadata.generation of the spec this status describes."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready, Reconciling and Stalled (kstatus), plus the job kinds' own.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    pending_operation: PendingOperation | None = Field(default=None, description="Azure operation in flight.")
    update_attempts: UpdateAttempts | None = Field(
        default=None,
        description="Updates made for the current difference from the spec; after 3 that leave it unchanged the "
        "resource is Stalled UpdateDoesNotConverge (a spec change starts again).",
    )
    last_handled_reconcile_at: str | None = Field(
        default=None, description="Last value of the amlops.io/reconcile-requested-at annotation acted on."
    )


def deletion_protection_field() -> bool:
    return Field(
        default=False,
        description="When true, the chart's admission policy refuses to delete this resource; set false first.",
    )
