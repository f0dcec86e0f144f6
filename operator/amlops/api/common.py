"""Building blocks shared by the three kinds: workspace and credential references, policies, conditions."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict

from amlops.api.kind import Rule


class ApiModel(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields ignored (the apiserver prunes them anyway)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


ManagementPolicy = Literal["Manage", "ObserveOnly"]
ConditionStatus = Literal["True", "False", "Unknown"]

AZURE_NAME = r"^[a-zA-Z0-9][a-zA-Z0-9_.()-]{0,89}$"
# Kubernetes' own name rules (apimachinery IsDNS1123Subdomain / IsConfigMapKey). Every field that names another
# object carries the rule of what it names, so "../../other-namespace/secrets/x" is refused by the apiserver
# before amlops ever builds a URL from it (the client escapes each path segment as well: kube_api.segment).
OBJECT_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
OBJECT_NAME_MAX = 253
DATA_KEY = r"^[-._a-zA-Z0-9]+$"
# An Azure ML compute target's name (AmlCompute and BatchCompute alike); it defaults to metadata.name.
COMPUTE_NAME = r"^[a-zA-Z][a-zA-Z0-9-]{1,15}$"
COMPUTE_NAME_RULE = Rule(
    f"has(self.spec.computeName) || self.metadata.name.matches('{COMPUTE_NAME}')",
    "metadata.name is not a valid Azure compute name (2-16 letters, digits or hyphens, starting with a letter): "
    "set spec.computeName",
)
SUBSCRIPTION_ID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
# An Azure region's name as ARM spells it in URLs (…/locations/westeurope/usages): letters and digits.
LOCATION = r"^[a-zA-Z][a-zA-Z0-9]{1,63}$"
# Azure's tag limits (learn.microsoft.com/azure/azure-resource-manager/management/tag-resources#limitations):
# 50 tags a resource, of which amlops' owner tag is one; a value of at most 256 characters. Bounded in the
# model as in the schema, which also keeps the cost of the tags' immutability rule within the apiserver's budget.
MAX_TAGS = 49
TagValue = Annotated[str, Field(max_length=256)]


class WorkspaceRef(ApiModel):
    """The Azure Machine Learning workspace (azureml-core ``Workspace(subscription_id, resource_group, name)``)."""

    subscription_id: str = Field(
        pattern=SUBSCRIPTION_ID, max_length=36, description="Azure subscription id (a GUID) of the workspace."
    )
    resource_group: str = Field(
        pattern=AZURE_NAME, max_length=90, description="Resource group that holds the workspace."
    )
    name: str = Field(
        pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_-]{2,32}$", max_length=33, description="Name of the Azure ML workspace."
    )


def tags_field(description: str) -> Any:
    """Azure tags of a resource amlops creates (its owner tag is added to them)."""
    return Field(default_factory=dict, max_length=MAX_TAGS, description=description)


def object_name(description: str) -> Any:
    """A field holding the name of another object in the resource's own namespace (DNS-1123 subdomain)."""
    return Field(min_length=1, max_length=OBJECT_NAME_MAX, pattern=OBJECT_NAME, description=description)


def data_key(default: str, description: str) -> Any:
    """A field naming a key of a Secret's or ConfigMap's data."""
    return Field(default=default, min_length=1, max_length=OBJECT_NAME_MAX, pattern=DATA_KEY, description=description)


class SecretRef(ApiModel):
    name: str = object_name("Name of a Secret in the resource's namespace (another namespace cannot be named).")


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


class ProvisioningError(ApiModel):
    """One entry of Azure's properties.provisioningErrors (seed: provisioning_errors)."""

    code: str = Field(description="Azure's error code (properties.provisioningErrors[].error.code).")
    message: str = Field(default="", description="Azure's message (properties.provisioningErrors[].error.message).")


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


def unchanged(field: str) -> str:
    """CEL: ``field`` is in both the old and the new object with the same value, or in neither. A rule on the
    field itself (``self == oldSelf``) runs only when both have it, so it misses a field added or removed."""
    return f"(has(self.{field}) ? has(oldSelf.{field}) && self.{field} == oldSelf.{field} : !has(oldSelf.{field}))"


@dataclass(frozen=True)
class Relaxed:
    """When an immutable field may change after all: ``when`` is a CEL condition on the new spec (e.g. the
    object asks for the resource to be re-created), ``hint`` says how to ask for it in the refusal's message,
    and ``except_`` names the fields it never relaxes (those that say *which* resource this is)."""

    when: str
    hint: str
    except_: frozenset[str] = frozenset()


def frozen(fields: Mapping[str, str], relaxed: Relaxed | None = None) -> Callable[[JsonDict], None]:
    """``json_schema_extra`` for a spec: one transition rule per immutable field, its message saying what to do
    instead (``fields``: camelCase name → what to do). With ``relaxed``, a field outside ``relaxed.except_`` may
    change while ``relaxed.when`` holds, and its message says so."""

    def extra(schema: JsonDict) -> None:
        rules = schema.setdefault("x-kubernetes-validations", [])
        assert isinstance(rules, list)
        for name, instead in fields.items():
            rule, message = unchanged(name), f"{name} is immutable: {instead}"
            if relaxed is not None and name not in relaxed.except_:
                rule, message = f"({relaxed.when}) || {rule}", f"{message}, or {relaxed.hint}"
            rules.append({"rule": rule, "message": message, "fieldPath": f".{name}"})

    return extra
