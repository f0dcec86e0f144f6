"""CommandJob: a training run on an AmlCompute through Azure ML (azure-ai-ml ``command()``, REST ``jobType: Command``).

The declarative home of azureml-core's ``Estimator`` (and ``ScriptRunConfig``): field descriptions name the
Estimator parameter each one replaces, and the azure-ai-ml ``command()`` keyword it becomes. What azure-ai-ml v2
dropped (``use_docker``, ``user_managed``, ``conda_packages`` lists, ``image_registry_details``, ...) has no field:
the README's CommandJob section gives the v2 replacement of each.

The spec cannot change once the job exists, except ``suspend`` and ``deletionProtection`` (one CEL transition
rule, as ParallelJob's).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import ConfigDict, Field, model_validator
from pydantic.config import JsonDict, JsonValue

from amlops.api.common import OBJECT_NAME, ApiModel, deletion_protection_field, object_name, unchanged
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
from amlops.api.paralleljob import (
    CASE_UNIQUE_MESSAGE,
    CASE_UNIQUE_RULE,
    IO_NAME_RULES,
    MAP_ENTRIES,
    SHORT,
    TEXT,
    URI,
    Identity,
    JobInput,
    io_names,
)

Text = Annotated[str, Field(max_length=TEXT)]
Short = Annotated[str, Field(max_length=SHORT)]
# A registered environment, as azure-ai-ml takes it: azureml:<name>:<version> or azureml:<name>@latest.
REGISTERED_ENVIRONMENT = r"^azureml:[A-Za-z0-9_.-]+(:[A-Za-z0-9_.-]+|@latest)$"
# What azure-ai-ml takes as a command job's code besides a local folder: an https folder URI or a registered code
# asset (azureml:<name>:<version>). Not an azureml://datastores/... path: its job validation refuses one ("Not a
# valid URL"), so the apiserver refuses it first.
REMOTE_CODE = r"^(https://[^\s/]+/\S+|azureml:[A-Za-z0-9_.-]+:[A-Za-z0-9_.-]+)$"
# Docker's --shm-size: a number and an optional unit (b, k, m, g), as azure-ai-ml's shm_size.
SHM_SIZE = r"^[0-9]+[bkmgBKMG]?$"


def _strings(description: str) -> Any:
    """A map of strings: at most ``MAP_ENTRIES`` entries of at most ``TEXT`` characters."""
    return Field(default_factory=dict, max_length=MAP_ENTRIES, description=description)


class Environment(ApiModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.name) != has(self.image)",
                    "message": "set exactly one of environment.name (a registered azureml:<name>:<version>) and "
                    "environment.image",
                },
                {
                    "rule": "!has(self.name) || (!has(self.condaFile) && size(self.pipRequirements) == 0)",
                    "message": "a registered environment (environment.name) brings its own packages: condaFile and "
                    "pipRequirements go with environment.image",
                },
            ]
        }
    )

    name: str | None = Field(
        default=None,
        max_length=SHORT,
        pattern=REGISTERED_ENVIRONMENT,
        description="Estimator: environment_definition (a registered Environment). command(environment="
        "'azureml:<name>:<version>'), or azureml:<name>@latest.",
    )
    image: str | None = Field(
        default=None,
        min_length=1,
        max_length=URI,
        description="Estimator: custom_docker_image (with image_registry_details: the workspace's registry "
        "credentials in Azure, not here). The job's container image.",
    )
    conda_file: str | None = Field(
        default=None,
        min_length=1,
        max_length=TEXT,
        description="Estimator: conda_dependencies_file, conda_packages. The conda environment YAML itself (what "
        "the file holds: name, channels, dependencies); Azure ML builds the image's conda environment from it.",
    )
    pip_requirements: list[Short] = Field(
        default_factory=list,
        max_length=MAP_ENTRIES,
        description="Estimator: pip_packages, pip_requirements_file. pip requirement lines, added to condaFile's "
        "pip section (or to a python and pip environment when condaFile is absent).",
    )

    @model_validator(mode="after")
    def _one_source(self) -> Environment:
        """What the CEL rules refuse, refused by the model too."""
        if (self.name is None) == (self.image is None):
            raise ValueError("set exactly one of environment.name and environment.image")
        if self.name is not None and (self.conda_file is not None or self.pip_requirements):
            raise ValueError("condaFile and pipRequirements go with environment.image")
        return self


class CommandInput(JobInput):
    """ParallelJob's input, with what it means for a command job."""

    type: Literal["uri_folder", "uri_file", "mltable", "string", "integer", "number", "boolean"] = Field(
        default="uri_folder",
        description="Input(type). uri_folder, uri_file, mltable: data at uri, downloaded to each node, and "
        "${{inputs.<name>}} in command is its path there. string, integer, number, boolean: a literal value, "
        "${{inputs.<name>}} is the value.",
    )


class JobOutput(ApiModel):
    uri: str | None = Field(
        default=None,
        min_length=1,
        max_length=URI,
        description="Output(path): where Azure ML writes the output, an azureml://datastores/<ds>/paths/<p> URI. "
        "Absent: Azure ML's default path for the output (status.outputs says which).",
    )
    type: Literal["uri_folder", "uri_file"] = Field(default="uri_folder", description="Output(type).")


class Resources(ApiModel):
    instance_count: int = Field(
        default=1,
        ge=1,
        le=1000,
        description="Estimator: node_count. command(instance_count): nodes of the AmlCompute the job runs on "
        "(at most its maxNodeCount).",
    )
    shm_size: str | None = Field(
        default=None,
        max_length=16,
        pattern=SHM_SIZE,
        description="Estimator: shm_size. command(shm_size): the container's /dev/shm, e.g. 2g.",
    )
    docker_args: str | None = Field(
        default=None,
        max_length=TEXT,
        description="command(docker_args): extra arguments of the job container's docker run.",
    )


class Distribution(ApiModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.type == 'TensorFlow' || (!has(self.workerCount) && !has(self.parameterServerCount))",
                    "message": "workerCount and parameterServerCount are TensorFlow's",
                },
                {
                    "rule": "self.type != 'TensorFlow' || !has(self.processCountPerInstance)",
                    "message": "processCountPerInstance is PyTorch's and Mpi's: TensorFlow counts workerCount",
                },
            ]
        }
    )

    type: Literal["PyTorch", "Mpi", "TensorFlow"] = Field(
        description="Estimator: distributed_training (PyTorchConfiguration, MpiConfiguration, "
        "TensorflowConfiguration; Gloo or NCCL is the script's choice of torch backend). command(distribution).",
    )
    process_count_per_instance: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description="Estimator: process_count_per_node. Processes per node (PyTorch, Mpi); absent: one.",
    )
    worker_count: int | None = Field(
        default=None, ge=1, le=INT32_MAX, description="TensorFlow: workers (absent: one per node)."
    )
    parameter_server_count: int | None = Field(
        default=None, ge=0, le=INT32_MAX, description="TensorFlow: parameter servers (absent: none)."
    )

    @model_validator(mode="after")
    def _counts_of_its_type(self) -> Distribution:
        tensorflow = self.type == "TensorFlow"
        if not tensorflow and (self.worker_count is not None or self.parameter_server_count is not None):
            raise ValueError("workerCount and parameterServerCount are TensorFlow's")
        if tensorflow and self.process_count_per_instance is not None:
            raise ValueError("processCountPerInstance is PyTorch's and Mpi's")
        return self


class Limits(ApiModel):
    timeout: int | None = Field(
        default=None,
        ge=1,
        le=INT32_MAX,
        description="Estimator: max_run_duration_seconds. command(timeout): seconds after which Azure ML cancels "
        "the run (the job then ends Failed with Azure's error). For a deadline that counts queueing too, see "
        "activeDeadlineSeconds.",
    )


# The Estimator's parameters that are no field of a CommandJob (azure-ai-ml v2 has no such parameter, or another
# field holds it): camelCase name → (the Estimator's parameter, what to write instead). Each is in the schema only to
# be refused with its replacement, rather than pruned in silence by the apiserver.
ESTIMATOR_ONLY: dict[str, tuple[str, str]] = {
    "sourceDirectory": ("source_directory", "use code (a folder URI or code asset) or codeConfigMap"),
    "sourceDirectoryDataStore": ("source_directory_data_store", "name the folder in code as its https:// blob URI"),
    "computeTarget": ("compute_target", "use compute (an AmlCompute of this namespace)"),
    "vmSize": ("vm_size", "serverless compute is not offered: name in compute an AmlCompute of that VM size"),
    "vmPriority": ("vm_priority", "serverless compute is not offered: name in compute an AmlCompute with that "
                   "vmPriority"),
    "entryScript": ("entry_script", "write the script into command: python <script> <arguments>"),
    "scriptParams": ("script_params", "write the arguments into command, inputs as ${{inputs.<name>}}"),
    "arguments": ("arguments", "write the arguments into command, inputs as ${{inputs.<name>}}"),
    "nodeCount": ("node_count", "use resources.instanceCount"),
    "processCountPerNode": ("process_count_per_node", "use distribution.processCountPerInstance"),
    "distributedTraining": ("distributed_training", "use distribution (type PyTorch, Mpi or TensorFlow)"),
    "environmentDefinition": ("environment_definition", "use environment.name (azureml:<name>:<version>)"),
    "customDockerImage": ("custom_docker_image", "use environment.image"),
    "condaPackages": ("conda_packages", "list them in environment.condaFile's dependencies"),
    "pipPackages": ("pip_packages", "use environment.pipRequirements"),
    "condaDependenciesFile": ("conda_dependencies_file", "put the file's content in environment.condaFile"),
    "pipRequirementsFile": ("pip_requirements_file", "put its lines in environment.pipRequirements"),
    "useGpu": ("use_gpu", "Azure ML v2 has no such switch: a GPU image in environment.image, on a GPU AmlCompute"),
    "useDocker": ("use_docker", "Azure ML v2 runs every job in a container: set environment.image or environment.name"),
    "userManaged": ("user_managed", "Azure ML v2 has no such switch: an environment.image without condaFile or "
                    "pipRequirements is used as it is"),
    "imageRegistryDetails": ("image_registry_details", "give the workspace access to the registry in Azure (no "
                             "credentials in the job); set environment.image"),
    "shmSize": ("shm_size", "use resources.shmSize"),
    "maxRunDurationSeconds": ("max_run_duration_seconds", "use limits.timeout"),
    "resumeFrom": ("resume_from", "declare the checkpoint folder as an input; the script reads ${{inputs.<name>}}"),
}  # fmt: skip
# The JSON type each Estimator parameter had (CEL sees only typed fields): a value of the right type gets the
# refusal that names the replacement.
_ESTIMATOR_TYPES: dict[str, str] = {
    "scriptParams": "object", "distributedTraining": "object", "environmentDefinition": "object",
    "imageRegistryDetails": "object", "arguments": "strings", "condaPackages": "strings", "pipPackages": "strings",
    "nodeCount": "integer", "processCountPerNode": "integer", "maxRunDurationSeconds": "integer",
    "useGpu": "boolean", "useDocker": "boolean", "userManaged": "boolean",
}  # fmt: skip


def _estimator_schema(name: str, parameter: str, instead: str) -> JsonDict:
    kind = _ESTIMATOR_TYPES.get(name, "string")
    schema: JsonDict = {"description": f"Refused: the Estimator's {parameter} has no field of its own in Azure ML v2: "
                                       f"{instead}."}  # fmt: skip
    if kind == "object":
        schema.update({"type": "object", "x-kubernetes-preserve-unknown-fields": True})
    elif kind == "strings":
        schema.update({"type": "array", "items": {"type": "string"}})
    else:
        schema["type"] = kind
    return schema


def _schema_extra(schema: JsonDict) -> None:
    """One transition rule over every field but suspend and deletionProtection: present in both old and new
    with the same value, or in neither (as ParallelJob's); code or codeConfigMap; and every Estimator-only
    parameter (:data:`ESTIMATOR_ONLY`) refused with what to write instead."""
    properties = schema.get("properties")
    assert isinstance(properties, dict)
    frozen = [name for name in properties if name not in MUTABLE]
    rules: list[JsonValue] = [
        {
            "rule": " && ".join(unchanged(f) for f in frozen),
            "message": "a CommandJob's spec is immutable except suspend and deletionProtection: "
            "create a new CommandJob instead",
        },
        {
            "rule": "has(self.code) != has(self.codeConfigMap)",
            "message": "set exactly one of code (https:// folder or azureml:<name>:<version> code asset) and "
            "codeConfigMap (a ConfigMap in this namespace)",
        },
    ]
    rules.append({"rule": CASE_UNIQUE_RULE, "message": CASE_UNIQUE_MESSAGE})
    for name, (parameter, instead) in ESTIMATOR_ONLY.items():
        properties[name] = _estimator_schema(name, parameter, instead)
        rules.append({"rule": f"!has(self.{name})", "message": f"{name} (Estimator: {parameter}): {instead}"})
    schema["x-kubernetes-validations"] = rules


MUTABLE = ("suspend", "deletionProtection")


class CommandJobSpec(JobControls):
    model_config = ConfigDict(json_schema_extra=_schema_extra)

    compute: str = object_name(
        "Estimator: compute_target. command(compute): name of an AmlCompute in this namespace; the job runs in its "
        "workspace, with its credentials. (Serverless compute, the Estimator's vm_size without a target, is not "
        "offered.)"
    )
    code: str | None = Field(
        default=None,
        min_length=1,
        max_length=URI,
        pattern=REMOTE_CODE,
        description="Estimator: source_directory (with source_directory_data_store). command(code): an https:// "
        "blob folder URI or a registered code asset azureml:<name>:<version> (azure-ai-ml refuses an "
        "azureml://datastores/ path as a command's code). Or use codeConfigMap.",
    )
    code_config_map: str | None = Field(
        default=None,
        min_length=1,
        max_length=253,
        pattern=OBJECT_NAME,
        description="Estimator: source_directory, kept in Git: name of a ConfigMap in this namespace whose keys "
        "are the code folder's files (data and binaryData). Uploaded by azure-ai-ml as the job's code when the job "
        "is submitted.",
    )
    command: str = Field(
        min_length=1,
        max_length=TEXT,
        description="Estimator: entry_script with script_params / arguments. command(command): the shell command run "
        "in the code folder, e.g. python train.py --data ${{inputs.data}} --model ${{outputs.model}}.",
    )
    environment: Environment = Field(
        description="Estimator: environment_definition, custom_docker_image, conda_packages, pip_packages, "
        "conda_dependencies_file, pip_requirements_file. command(environment)."
    )
    environment_variables: dict[str, Text] = _strings(
        "Estimator: environment_variables. command(environment_variables): set for every process of the job."
    )
    inputs: dict[str, CommandInput] = Field(
        default_factory=dict,
        max_length=MAP_ENTRIES,
        description="Estimator: inputs (and resume_from: a checkpoint folder the script reads as an input). "
        "command(inputs): ${{inputs.<name>}} in command is the input's path on the node, or a literal's value. "
        "Names are letters, digits and _ (not starting with a digit); no two names of inputs and outputs differ "
        "only by case.",
        json_schema_extra={"x-kubernetes-validations": IO_NAME_RULES},
    )
    outputs: dict[str, JobOutput] = Field(
        default_factory=dict,
        max_length=MAP_ENTRIES,
        description="command(outputs): ${{outputs.<name>}} in command is a folder on the node whose content Azure "
        "ML uploads to the output's uri when the job ends.",
        json_schema_extra={"x-kubernetes-validations": IO_NAME_RULES},
    )
    resources: Resources = Field(
        default_factory=Resources, description="command(instance_count, shm_size, docker_args)."
    )
    distribution: Distribution | None = Field(
        default=None,
        description="Estimator: distributed_training, process_count_per_node. command(distribution): Azure ML "
        "starts the processes and sets their rank variables (RANK, WORLD_SIZE, MASTER_ADDR, ... for PyTorch; "
        "OMPI_COMM_WORLD_* for Mpi; TF_CONFIG for TensorFlow). Absent: one process per node.",
    )
    limits: Limits = Field(default_factory=Limits, description="command(timeout).")
    display_name: str | None = Field(default=None, max_length=SHORT, description="command(display_name).")
    experiment_name: str | None = Field(
        default=None,
        max_length=SHORT,
        description="Estimator: the Experiment it was submitted to. command(experiment_name); absent: azure-ai-ml's "
        "default, the name of the operator process's working directory (not this object's): set it to group runs.",
    )
    description: str | None = Field(default=None, max_length=TEXT, description="command(description).")
    tags: dict[str, Text] = _strings("command(tags). amlops adds its owner tag (amlops.io-owner).")
    properties: dict[str, Text] = _strings("command(properties).")
    identity: Identity | None = Field(
        default=None,
        description="command(identity): what the job's code authenticates as to data and other Azure services: "
        "the compute's managed identity, the submitting identity (user_identity) or an Azure ML token (aml_token). "
        "Absent: Azure ML's default.",
    )
    deletion_policy: Literal["Delete", "Orphan"] = Field(
        default="Delete",
        description="Delete cancels the Azure ML job with the object (if it still runs); Orphan leaves it running.",
    )
    deletion_protection: bool = deletion_protection_field()

    @model_validator(mode="before")
    @classmethod
    def _no_estimator_only(cls, data: Any) -> Any:
        """What the CEL rules refuse, refused by the model too: an Estimator-only parameter."""
        for name in set(data) & set(ESTIMATOR_ONLY) if isinstance(data, dict) else ():
            parameter, instead = ESTIMATOR_ONLY[name]
            raise ValueError(f"{name} (Estimator: {parameter}): {instead}")
        return data

    @model_validator(mode="after")
    def _one_code(self) -> CommandJobSpec:
        """What the CEL rule refuses, refused by the model too."""
        if (self.code is None) == (self.code_config_map is None):
            raise ValueError("set exactly one of code and codeConfigMap")
        io_names(self.inputs, self.outputs)
        return self


class JobErrorStatus(ApiModel):
    code: str = Field(description="Azure ML's error code (run history), e.g. UserError, JobTimeout.")
    message: str = Field(default="", description="Azure ML's message.")


class CommandJobStatus(JobStatus):
    azure_job_name: str | None = Field(
        default=None,
        description="Name of the Azure ML job: cj-<uid>, then cj-<uid>-<n> for the n-th resume after a suspend.",
    )
    attempt: int | None = Field(default=None, description="Submissions so far minus one (each resume adds one).")
    azure_status: str | None = Field(
        default=None, description="Azure ML's own status of the job (Queued, Preparing, Running, Completed, ...)."
    )
    studio_url: str | None = Field(default=None, description="The job in Azure ML studio.")
    error: JobErrorStatus | None = Field(default=None, description="Why Azure ML failed the job.")
    log_tail: str | None = Field(
        default=None,
        description="The last lines of the job's driver log (user_logs/std_log*.txt of the first process) when it "
        "failed.",
    )
    outputs: dict[str, str] = Field(
        default_factory=dict, description="Where each output is, as Azure ML reports it, once the job has ended."
    )


class CommandJob(CustomResource):
    spec_model: ClassVar = CommandJobSpec
    status_model: ClassVar = CommandJobStatus
    definition: ClassVar = Definition(
        names=Names("CommandJob", "commandjobs", "commandjob", ("cj",)),
        description="A command job (azure-ai-ml command(), azureml-core's Estimator) run on an AmlCompute.",
        printer_columns=(
            PrinterColumn("Compute", ".spec.compute"),
            PrinterColumn("Phase", ".status.phase"),
            PrinterColumn("Azure", ".status.azureStatus"),
            READY_COLUMN,
            REASON_COLUMN,
            AGE_COLUMN,
        ),
    )
