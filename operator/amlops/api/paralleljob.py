"""ParallelJob: azure-ai-ml ``parallel_run_function`` run through Azure ML on an AmlCompute, or on a BatchCompute's
account.

Field descriptions name the seed parameter of ``azure.ai.ml.parallel.parallel_run_function`` each maps to.
The spec cannot change once the job exists, except ``suspend`` (a CEL transition rule on the spec).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import ConfigDict, Field, model_validator
from pydantic.config import JsonDict, JsonValue

from amlops.api.common import (
    OBJECT_NAME,
    ApiModel,
    data_key,
    deletion_protection_field,
    object_name,
    unchanged,
)
from amlops.api.job import INT32_MAX, JobControls, JobStatus
from amlops.api.kind import (
    AGE_COLUMN,
    READY_COLUMN,
    REASON_COLUMN,
    CustomResource,
    Definition,
    Names,
    PrinterColumn,
)

# Bounds keep the CEL immutability rule's estimated cost within the apiserver's budget (an equality over an
# unbounded map of unbounded strings is priced as if it filled the whole request).
SHORT = 256
URI = 2048
TEXT = 4096
MAP_ENTRIES = 64
REFERENCE = r"^\$\{\{(inputs|outputs)\.[A-Za-z_][A-Za-z0-9_]*\}\}$"
NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
# The VM size of the pool amlops creates for a job on a BatchCompute when compute.instanceType is absent.
DEFAULT_VM_SIZE = "STANDARD_D2S_V3"
# Azure ML's JobResourceConfiguration.shmSize: (number)(unit), the number above 0, the unit b, k, m or g.
SHM_SIZE = r"^0*[1-9][0-9]{0,11}[bBkKmMgG]$"
UUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
# A user-assigned managed identity's ARM resource id.
IDENTITY_ID = (
    r"^/subscriptions/[^/]+/resource[gG]roups/[^/]+/providers/Microsoft\.ManagedIdentity/userAssignedIdentities/[^/]+$"
)


# Bounded in the model itself (not only in the CRD's schema), so the model refuses what the apiserver refuses.
Text = Annotated[str, Field(max_length=TEXT)]
Short = Annotated[str, Field(max_length=SHORT)]


def _strings(description: str) -> Any:
    """A map of strings: at most ``MAP_ENTRIES`` entries of at most ``TEXT`` characters."""
    return Field(default_factory=dict, max_length=MAP_ENTRIES, description=description)


class ComputeRef(ApiModel):
    name: str = object_name(
        "Seed: compute. Name of an AmlCompute (the job runs through Azure ML) or a BatchCompute (on its Azure Batch "
        "account) in this namespace."
    )
    pool_id: str | None = Field(
        default=None,
        pattern=r"^[a-zA-Z0-9_-]{1,64}$",
        description="A pool of that BatchCompute's spec.pools to run on (no other pool: PoolNotManaged). Absent: "
        "amlops creates a pool for this job (instanceType, instanceCount, lowPriority) and deletes it when the job "
        "ends or is deleted.",
    )
    instance_type: str | None = Field(
        default=None,
        min_length=1,
        max_length=SHORT,
        description="Batch backend: vmSize of the pool amlops creates when poolId is absent (absent: "
        f"{DEFAULT_VM_SIZE}). With poolId: must be that pool's vmSize (else InvalidSpec), or absent. The Azure ML "
        "backend's VM size is resources.instanceType.",
    )
    low_priority: bool = Field(
        default=False, description="The pool amlops creates uses low-priority (Spot) nodes instead of dedicated ones."
    )


DATA_TYPES = ("uri_folder", "uri_file", "mltable")
LITERAL_TYPES = ("string", "integer", "number", "boolean")
_LITERAL_PATTERNS = {"integer": r"^-?[0-9]+$", "number": r"^-?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][-+]?[0-9]+)?$",
                     "boolean": r"^(true|false|True|False)$"}  # fmt: skip


def _input_rules() -> list[JsonValue]:
    data = "[" + ", ".join(f"'{t}'" for t in DATA_TYPES) + "]"
    rules: list[JsonValue] = [
        {
            "rule": f"self.type in {data} ? (has(self.uri) && !has(self.value)) : (has(self.value) && !has(self.uri))",
            "message": "a data input (uri_folder, uri_file, mltable) sets uri; a literal input (string, integer, "
            "number, boolean) sets value and its type",
        }
    ]
    for kind, pattern in _LITERAL_PATTERNS.items():
        rules.append(
            {
                "rule": f"self.type != '{kind}' || !has(self.value) || self.value.matches('{pattern}')",
                "message": f"value is not a literal of type {kind}",
            }
        )
    return rules


class JobInput(ApiModel):
    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": _input_rules()})

    uri: str | None = Field(
        default=None,
        min_length=1,
        max_length=URI,
        description="Seed: Input(path). Blob folder or file URI (data inputs).",
    )
    type: Literal["uri_folder", "uri_file", "mltable", "string", "integer", "number", "boolean"] = Field(
        default="uri_folder",
        description="Seed: Input(type). As inputData: uri_folder: every file is an item; mltable: the files its "
        "MLTable file's paths name (or every CSV / JSON Lines file of the folder without one), rows are items, "
        "split by size; uri_file of a .csv/.jsonl: rows are items. Any other input is downloaded to each node "
        "before init() (a folder, an MLTable folder, or one file) and ${{inputs.<name>}} in "
        "task.programArguments is its path there. string, integer, number, boolean: a literal value, "
        "${{inputs.<name>}} is the value.",
    )
    value: str | None = Field(
        default=None,
        min_length=0,
        max_length=SHORT,
        description="Seed: a literal input (inputs=dict(n=5)), with type string, integer, number or boolean.",
    )

    @model_validator(mode="after")
    def _uri_or_value(self) -> JobInput:
        """What the CEL rules refuse, refused by the model too."""
        if (self.type in DATA_TYPES) != (self.uri is not None) or (self.uri is None) == (self.value is None):
            raise ValueError("a data input sets uri; a literal input sets value and its type")
        pattern = _LITERAL_PATTERNS.get(self.type)
        if pattern is not None and self.value is not None and not re.match(pattern, self.value):
            raise ValueError(f"value is not a literal of type {self.type}")
        return self


class JobOutput(ApiModel):
    uri: str = Field(min_length=1, max_length=URI, description="Seed: Output(path). Blob folder URI.")
    type: Literal["uri_folder"] = Field(default="uri_folder", description="Seed: Output(type).")


class RetrySettings(ApiModel):
    max_retries: int = Field(
        default=2,
        ge=0,
        le=100,
        description="Seed: retry_settings.max_retries. Retries of a mini-batch whose run() raised or timed out: it "
        "runs at most 1 + maxRetries times (Batch maxTaskRetryCount; on Azure ML the same). Default 2, Azure ML's "
        "(azure-ai-ml sends no default). A run() that returned fewer results than items is not retried.",
    )
    timeout: int = Field(
        default=60, ge=1, le=604800, description="Seed: retry_settings.timeout, seconds per run() call."
    )


class Environment(ApiModel):
    image: str | None = Field(
        default=None,
        max_length=URI,
        description="Seed: environment.image. Every mini-batch runs in this container image (it needs python3). "
        "A pool amlops creates is made container-enabled; a given compute.poolId must already be (Batch runs "
        "only container tasks on such a pool, and none elsewhere).",
    )
    conda_file: str | None = Field(
        default=None,
        max_length=SHORT,
        description="Seed: environment.conda_file. Path of a conda environment YAML inside task.code. Its pip: "
        "section is installed on each node; python and pip entries are the node's own; other conda packages "
        "are refused (InvalidSpec): Batch nodes have no conda.",
    )
    pip_requirements: list[Short] = Field(
        default_factory=list,
        max_length=MAP_ENTRIES,
        description="pip requirement lines (as in requirements.txt; relative paths are relative to task.code). "
        "Installed once per node with the node's python3 -m pip into a folder shared by its mini-batches.",
    )


class TaskSpec(ApiModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.code) != has(self.codeConfigMap)",
                    "message": "set exactly one of task.code (a blob folder URI) and task.codeConfigMap "
                    "(a ConfigMap in this namespace)",
                }
            ]
        }
    )

    code: str | None = Field(
        default=None,
        min_length=1,
        max_length=URI,
        description="Seed: task.code. Blob URI of the folder holding the scripts. Or use codeConfigMap.",
    )
    code_config_map: str | None = Field(
        default=None,
        min_length=1,
        max_length=253,
        pattern=OBJECT_NAME,
        description="Seed: task.code, kept in Git: name of a ConfigMap in this namespace whose keys are the code "
        "folder's files (data and binaryData). Copied next to the job's plan when the job starts.",
    )
    entry_script: str = Field(min_length=1, max_length=SHORT, description="Seed: task.entry_script, relative to code.")
    program_arguments: str | None = Field(
        default=None, max_length=TEXT, description="Seed: task.program_arguments, split like a shell would."
    )
    environment: Environment | None = Field(
        default=None,
        description="Seed: task.environment. pipRequirements and the condaFile's pip section are installed on "
        "each node before the first mini-batch there runs; part of the job's identity (isDeterministic).",
    )
    append_row_to: str | None = Field(
        default=None,
        pattern=r"^\$\{\{outputs\.[A-Za-z_][A-Za-z0-9_]*\}\}$",
        description="Seed: task.append_row_to, e.g. ${{outputs.scores}}: run() results go to "
        "<output>/parallel_run_step.txt in mini-batch order.",
    )


class Resources(ApiModel):
    """What azure-ai-ml's ``parallel_run_function`` takes besides ``instance_count`` for the job's compute
    (``JobResourceConfiguration``). Only the Azure ML backend honours them: on a BatchCompute they are refused
    (RequiresAmlCompute) rather than ignored."""

    instance_type: str | None = Field(
        default=None,
        min_length=1,
        max_length=SHORT,
        description="Seed: instance_type. The VM type Azure ML runs the job on, as the AmlCompute supports it. "
        "Azure ML backend only (a BatchCompute's pool size is compute.instanceType).",
    )
    shm_size: str | None = Field(
        default=None,
        pattern=SHM_SIZE,
        max_length=16,
        description="Seed: shm_size. Size of the container's shared memory block: a number above 0 and a unit, "
        "b, k, m or g (e.g. 2g). Azure ML backend only.",
    )
    docker_args: str | None = Field(
        default=None,
        min_length=1,
        max_length=TEXT,
        description="Seed: docker_args. Extra arguments of the docker run command; they override what Azure ML "
        "sets. Azure ML backend only.",
    )


IDENTITY_TYPES = ("managed", "user_identity", "aml_token")
_MANAGED_ONLY = "!has(self.clientId) && !has(self.objectId) && !has(self.resourceId)"
IDENTITY_MESSAGE = "clientId, objectId and resourceId name a managed identity: set them only with type managed"


class Identity(ApiModel):
    """azure-ai-ml's ``identity``: ManagedIdentityConfiguration, UserIdentityConfiguration or
    AmlTokenConfiguration, by ``type`` as azure-ai-ml's YAML spells it."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": f"self.type == 'managed' || ({_MANAGED_ONLY})",
                    "message": IDENTITY_MESSAGE,
                }
            ]
        }
    )

    type: Literal["managed", "user_identity", "aml_token"] = Field(
        description="Seed: identity. managed: a managed identity of the compute (ManagedIdentityConfiguration; "
        "none of clientId, objectId, resourceId: the system-assigned one); user_identity: the submitting user's "
        "(UserIdentityConfiguration); aml_token: an Azure ML token (AmlTokenConfiguration). Azure ML backend only.",
    )
    client_id: str | None = Field(default=None, pattern=UUID, description="A user-assigned identity's client id.")
    object_id: str | None = Field(default=None, pattern=UUID, description="A user-assigned identity's object id.")
    resource_id: str | None = Field(
        default=None,
        max_length=1024,
        pattern=IDENTITY_ID,
        description="A user-assigned identity's ARM resource id (/subscriptions/.../userAssignedIdentities/<name>).",
    )

    @model_validator(mode="after")
    def _managed_only(self) -> Identity:
        """What the CEL rule refuses, refused by the model too."""
        if self.type != "managed" and (self.client_id, self.object_id, self.resource_id) != (None, None, None):
            raise ValueError(IDENTITY_MESSAGE)
        return self


class StorageSecretRef(ApiModel):
    name: str = object_name("Name of a Secret in this namespace (another namespace cannot be named).")
    key: str = data_key("connectionString", "Key holding the connection string.")


class StorageCredentials(ApiModel):
    secret_ref: StorageSecretRef = Field(
        description="A Secret holding the storage account's connection string (its key signs the SAS URLs the "
        "nodes use: one blob each, read-only but for the task's own results)."
    )


def _immutable_except_suspend(schema: JsonDict) -> None:
    """One transition rule over every field but suspend and deletionProtection: present in both old and new
    with the same value, or in neither (a per-field ``self == oldSelf`` misses a field added or removed)."""
    properties = schema.get("properties")
    assert isinstance(properties, dict)
    frozen = [name for name in properties if name not in MUTABLE]
    rule = " && ".join(unchanged(f) for f in frozen)
    schema["x-kubernetes-validations"] = [
        {
            "rule": rule,
            "message": "a ParallelJob's spec is immutable except suspend and deletionProtection: "
            "create a new ParallelJob instead",
        },
        {"rule": CASE_UNIQUE_RULE, "message": CASE_UNIQUE_MESSAGE},
    ]


MUTABLE = ("suspend", "deletionProtection")
# azure-ai-ml refuses input and output names equal but for case (Component._validate_io_names), across both maps.
# (outputs is required; has() keeps the rule from failing on its own when it is missing.)
CASE_UNIQUE_RULE = (
    "(!has(self.inputs) || self.inputs.all(a, self.inputs.exists_one(b, b.lowerAscii() == a.lowerAscii()) && "
    "!(has(self.outputs) && self.outputs.exists(o, o.lowerAscii() == a.lowerAscii())))) && "
    "(!has(self.outputs) || self.outputs.all(a, self.outputs.exists_one(b, b.lowerAscii() == a.lowerAscii())))"
)
CASE_UNIQUE_MESSAGE = "no two names of inputs and outputs may differ only by case (azure-ai-ml refuses them)"
IO_NAME_RULES: list[JsonValue] = [
    {
        "rule": f"self.all(k, k.matches('{NAME}'))",
        "message": "names are letters, digits and _, not starting with a digit: what ${{inputs.<name>}} can name",
    }
]


def io_names(inputs: dict[str, Any], outputs: dict[str, Any]) -> None:
    """What the name rules refuse (:data:`IO_NAME_RULES`, :data:`CASE_UNIQUE_RULE`), refused by the model too."""
    seen: dict[str, str] = {}
    for name in [*inputs, *outputs]:
        if not re.fullmatch(NAME, name):  # not match: Python's $ also matches before a final newline, RE2's not
            raise ValueError(f"{name[:100]!r}: names are letters, digits and _, not starting with a digit")
        if seen.setdefault(name.lower(), name) != name:
            raise ValueError(f"{seen[name.lower()]!r} and {name!r}: {CASE_UNIQUE_MESSAGE}")


class ParallelJobSpec(JobControls):
    model_config = ConfigDict(json_schema_extra=_immutable_except_suspend)

    compute: ComputeRef = Field(description="Seed: compute.")
    display_name: str | None = Field(default=None, max_length=SHORT, description="Seed: display_name.")
    description: str | None = Field(default=None, max_length=TEXT, description="Seed: description.")
    tags: dict[str, Text] = _strings("Seed: tags.")
    properties: dict[str, Text] = _strings("Seed: properties.")
    experiment_name: str | None = Field(default=None, max_length=SHORT, description="Seed: experiment_name.")
    inputs: dict[str, JobInput] = Field(
        default_factory=dict,
        max_length=MAP_ENTRIES,
        description="Seed: inputs. Names are letters, digits and _ (not starting with a digit); no two names of "
        "inputs and outputs differ only by case.",
        json_schema_extra={"x-kubernetes-validations": IO_NAME_RULES},
    )
    outputs: dict[str, JobOutput] = Field(
        min_length=1,
        max_length=MAP_ENTRIES,
        json_schema_extra={"x-kubernetes-validations": IO_NAME_RULES},
        description="Seed: outputs. At least one: the results (parallel_run_step.txt, per-mini-batch summaries) "
        "are written to appendRowTo's output, or the first by name.",
    )
    input_data: str = Field(
        pattern=r"^\$\{\{inputs\.[A-Za-z_][A-Za-z0-9_]*\}\}$",
        description="Seed: input_data, e.g. ${{inputs.data}}: the input that is split into mini-batches.",
    )
    mini_batch_size: str | None = Field(
        default=None,
        max_length=32,
        pattern=r"^\s*[0-9]+\s*([KkMmGg][Bb]?|[Bb])?\s*$",
        description="Seed: mini_batch_size. Files per mini-batch (e.g. 10), or for tabular input a size (1024, "
        "512KB, 10MB, 1GB; binary units). Absent: the seed's defaults, 10 files for file input and 1MB for tabular "
        "input. Ignored with partitionKeys.",
    )
    partition_keys: list[Short] = Field(
        default_factory=list,
        max_length=16,
        description="Seed: partition_keys. File inputs: keys of key=value folder segments; tabular inputs: column "
        "names. They take precedence over miniBatchSize: each key group is one mini-batch, whatever its size (a "
        "group of more than 1,000 files or row ranges is refused: PartitionTooLarge).",
    )
    max_concurrency_per_instance: int = Field(
        default=1,
        ge=1,
        le=256,
        description="Seed: max_concurrency_per_instance. Mini-batches run at once per node. Batch: taskSlotsPerNode "
        "of the pool amlops creates; with compute.poolId, at most that pool's taskSlotsPerNode (else InvalidSpec).",
    )
    instance_count: int = Field(
        default=1,
        ge=1,
        le=1000,
        description="Seed: instance_count. Nodes the job runs on. Batch: nodes of the pool amlops creates; with "
        "compute.poolId, the job runs at most instanceCount times maxConcurrencyPerInstance mini-batches at once "
        "(the Batch job's maxParallelTasks), on whichever of the pool's nodes Batch picks.",
    )
    error_threshold: int = Field(
        default=-1,
        ge=-1,
        le=INT32_MAX,
        description="Seed: error_threshold. Failed items tolerated; -1 ignores failures.",
    )
    mini_batch_error_threshold: int = Field(
        default=-1,
        ge=-1,
        le=INT32_MAX,
        description="Seed: mini_batch_error_threshold. Failed mini-batches tolerated; -1 ignores.",
    )
    retry_settings: RetrySettings = Field(default_factory=RetrySettings, description="Seed: retry_settings.")
    environment_variables: dict[str, Text] = _strings("Seed: environment_variables. Set for every mini-batch.")
    # azure-ai-ml's parallel_run_function takes only these three (its schema refuses ERROR and CRITICAL).
    logging_level: Literal["DEBUG", "INFO", "WARNING"] = Field(default="INFO", description="Seed: logging_level.")
    task: TaskSpec = Field(description="Seed: task (RunFunction).")
    is_deterministic: bool = Field(
        default=True,
        description="Seed: is_deterministic. When true and a completed deterministic ParallelJob in this namespace "
        "has the same content hash (spec, input listing etags, code etags), its output is reused and no compute "
        "runs (status.reusedFrom). Default true, as the seed's; set false to always run.",
    )
    storage_credentials: StorageCredentials | None = Field(
        default=None,
        description="Storage account access for inputs, code and outputs. Absent: the operator's account "
        "(AMLOPS_BLOB_CONNECTION_STRING), only for namespaces the operator lists in "
        "AMLOPS_SHARED_STORAGE_NAMESPACES and only in containers named <namespace> or <namespace>-*.",
    )
    resources: Resources | None = Field(
        default=None,
        description="Seed: instance_type, shm_size, docker_args. Azure ML backend only (RequiresAmlCompute on a "
        "BatchCompute).",
    )
    identity: Identity | None = Field(
        default=None, description="Seed: identity. Azure ML backend only (RequiresAmlCompute on a BatchCompute)."
    )
    deletion_protection: bool = deletion_protection_field()

    @model_validator(mode="after")
    def _names(self) -> ParallelJobSpec:
        io_names(self.inputs, self.outputs)
        return self


class MiniBatchCounts(ApiModel):
    total: int = 0
    pending: int = Field(default=0, description="Planned, not running yet (not added, or waiting for a slot).")
    running: int = 0
    succeeded: int = Field(default=0, description="run() returned a result for every item.")
    failed: int = Field(
        default=0,
        description="run() raised or timed out on the last attempt, or returned fewer results than items (as "
        "Azure ML: such a mini-batch is failed and not retried; its missing items count as failed items).",
    )
    retried: int = Field(default=0, description="Retries used across all mini-batches.")


class ItemCounts(ApiModel):
    processed: int = 0
    failed: int = 0


class ParallelJobStatus(JobStatus):
    backend: Literal["AzureML", "Batch"] | None = Field(
        default=None,
        description="Where the job runs, decided once by the kind of compute.name when the job was first seen: "
        "AzureML (an AmlCompute: an Azure ML pipeline job with one parallel node) or Batch (a BatchCompute). It "
        "never changes afterwards, whatever object of that name appears later.",
    )
    job_id: str | None = Field(default=None, description="Azure Batch job id (backend Batch).")
    pool_id: str | None = Field(default=None, description="Azure Batch pool the job runs on (backend Batch).")
    azure_job_name: str | None = Field(
        default=None,
        description="Name of the Azure ML pipeline job (backend AzureML): pj-<uid>, then pj-<uid>-<attempt> for "
        "each resume after a suspend.",
    )
    studio_url: str | None = Field(default=None, description="The Azure ML job in Azure ML Studio (backend AzureML).")
    attempt: int | None = Field(
        default=None,
        description="Resumes after a suspend so far (backend AzureML): suspend cancels the Azure ML job, and each "
        "resume submits a new one, pj-<uid>-<attempt>, that runs every mini-batch again.",
    )
    mini_batches: MiniBatchCounts | None = None
    items: ItemCounts | None = None
    progress: str | None = Field(default=None, description="Finished/total mini-batches, N/M.")
    progress_percentage: int | None = Field(default=None, description="Finished mini-batches, percent.")
    estimated_remaining_seconds: int | None = Field(default=None, description="From the rate so far.")
    failed_mini_batches: str | None = Field(default=None, description="Indexes of failed mini-batches: 3,7-9.")
    output: str | None = Field(default=None, description="URI of parallel_run_step.txt (appendRowTo).")
    content_hash: str | None = Field(
        default=None, description="Hash of what decides the result: spec, input and code listings (isDeterministic)."
    )
    reused_from: str | None = Field(
        default=None, description="The completed ParallelJob whose output this one reuses (isDeterministic)."
    )
    resources_released: bool | None = Field(
        default=None,
        description=(
            "A finished job holds no compute any more: its Batch job has ended and the pool amlops created for it "
            "(pj-<uid>) is deleted. Until true, amlops keeps releasing them."
        ),
    )


class ParallelJob(CustomResource):
    spec_model: ClassVar = ParallelJobSpec
    status_model: ClassVar = ParallelJobStatus
    definition: ClassVar = Definition(
        names=Names("ParallelJob", "paralleljobs", "paralleljob", ("pj",)),
        description="A parallel run (azure-ai-ml parallel_run_function) executed through Azure ML on an AmlCompute, or "
        "on a BatchCompute's account.",
        printer_columns=(
            PrinterColumn("Compute", ".spec.compute.name"),
            PrinterColumn("Phase", ".status.phase"),
            PrinterColumn("Progress", ".status.progress"),
            READY_COLUMN,
            REASON_COLUMN,
            AGE_COLUMN,
        ),
    )
