"""CommandJob spec → the keyword arguments of azure-ai-ml's own ``command()``, pure: plain data in azure-ai-ml's
parameter names, no SDK object (``external/commandjob_aml_job.py`` builds the entity from it).

Nothing here imports azure-ai-ml: its import costs seconds and tens of MB, paid only when a job is submitted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from amlops.api.commandjob import CommandJobSpec, Distribution
from amlops.external.paralleljob_aml import Data, conda_specification, identity
from amlops.external.paralleljob_aml import job_name as aml_job_name
from amlops.reconcile.errors import TerminalError
from amlops.reconcile.managed import OWNER_TAG
from amlops.status import REASON_INVALID_SPEC

# A reference in the command: ${{inputs.x}} or ${{outputs.x}} (azure-ai-ml's binding syntax).
_REFERENCE = re.compile(r"\$\{\{\s*(inputs|outputs)\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
# azure-ai-ml's distribution dicts: its ``type`` key in lower case (``DistributionType``).
_DISTRIBUTION_TYPES = {"PyTorch": "pytorch", "Mpi": "mpi", "TensorFlow": "tensorflow"}


def job_name(uid: str, attempt: int = 0) -> str:
    """The Azure ML job's name, ``cj-<uid>[-<attempt>]`` (see :func:`~amlops.external.paralleljob_aml.job_name`)."""
    return aml_job_name(uid, attempt, prefix="cj")


@dataclass(frozen=True)
class EnvironmentSource:
    """``command(environment=...)``: a registered environment's reference (``azureml:<name>:<version>``), or an
    image with an optional conda specification (parsed; ``pipRequirements`` merged into its pip section)."""

    registered: str | None = None
    image: str | None = None
    conda: dict[str, Any] | None = None


@dataclass(frozen=True)
class CommandRun:
    """Everything for ``command(**arguments, code=..., environment=..., inputs=..., outputs=...)``."""

    arguments: dict[str, Any]
    environment: EnvironmentSource
    code: str
    inputs: dict[str, Data] = field(default_factory=dict)
    outputs: dict[str, Data] = field(default_factory=dict)


def command_run(spec: CommandJobSpec, name: str, compute: str, owner: str, local_code: str | None = None) -> CommandRun:
    """azure-ai-ml's ``command()`` arguments for ``spec`` as the job ``name`` on the workspace's compute
    ``compute``, with amlops' owner tag (``OWNER_TAG``) ``owner``.

    ``local_code``: the local folder the caller wrote ``codeConfigMap``'s files to (azure-ai-ml uploads it to the
    workspace's datastore); without it, ``spec.code`` (an https folder or a code asset)."""
    check_references(spec)
    code = local_code if local_code is not None else spec.code
    if code is None:  # the schema requires one of code and codeConfigMap
        raise TerminalError(REASON_INVALID_SPEC, "set code or codeConfigMap")
    return CommandRun(
        arguments=_arguments(spec, name, compute, owner),
        environment=environment_source(spec),
        code=code,
        inputs={key: Data(value.type, value.uri, value.value) for key, value in spec.inputs.items()},
        outputs={key: Data(value.type, value.uri) for key, value in spec.outputs.items()},
    )


def check_references(spec: CommandJobSpec) -> None:
    """Every ``${{inputs.x}}`` / ``${{outputs.x}}`` of the command names one of the spec's inputs or outputs:
    azure-ai-ml would refuse it at submission with a less direct message; refused here before anything is built."""
    for kind, name in _REFERENCE.findall(spec.command):
        names = spec.inputs if kind == "inputs" else spec.outputs
        if name not in names:
            raise TerminalError(
                REASON_INVALID_SPEC,
                f"command names ${{{{{kind}.{name}}}}}, which is not in spec.{kind} ({sorted(names)})",
            )


def _arguments(spec: CommandJobSpec, name: str, compute: str, owner: str) -> dict[str, Any]:
    """``command()``'s scalar keywords. The owner tag goes last: a user's tag of the same key cannot hide it."""
    arguments: dict[str, Any] = {
        "name": name,
        "command": spec.command,
        "compute": compute,
        "environment_variables": dict(spec.environment_variables),
        "instance_count": spec.resources.instance_count,
        "tags": {**spec.tags, OWNER_TAG: owner},
        "properties": dict(spec.properties),
    }
    for key, value in (
        ("display_name", spec.display_name),
        ("experiment_name", spec.experiment_name),
        ("description", spec.description),
        ("shm_size", spec.resources.shm_size),
        ("docker_args", spec.resources.docker_args),
        ("timeout", spec.limits.timeout),
    ):
        if value is not None:
            arguments[key] = value
    if spec.distribution is not None:
        arguments["distribution"] = distribution(spec.distribution)
    if (given := identity(spec.identity)) is not None:
        arguments["identity"] = given
    return arguments


def distribution(value: Distribution) -> dict[str, Any]:
    """The spec's distribution as azure-ai-ml's distribution dict (``{"type": "pytorch", ...}``); counts left
    out are Azure ML's defaults (one process per instance; a TensorFlow worker per instance, no parameter
    server)."""
    out: dict[str, Any] = {"type": _DISTRIBUTION_TYPES[value.type]}
    for key, count in (
        ("process_count_per_instance", value.process_count_per_instance),
        ("worker_count", value.worker_count),
        ("parameter_server_count", value.parameter_server_count),
    ):
        if count is not None:
            out[key] = count
    return out


def environment_source(spec: CommandJobSpec) -> EnvironmentSource:
    """A registered environment as it is; an image with its conda file parsed and pip lines merged (InvalidSpec
    when the conda file is no YAML mapping)."""
    environment = spec.environment
    if environment.name is not None:
        return EnvironmentSource(registered=environment.name)
    conda_file = parse_conda(environment.conda_file) if environment.conda_file is not None else None
    conda = conda_specification(conda_file, tuple(environment.pip_requirements))
    return EnvironmentSource(image=environment.image, conda=conda)


def parse_conda(text: str) -> dict[str, Any]:
    """``environment.condaFile`` (the YAML itself) as the mapping azure-ai-ml's ``Environment(conda_file=)``
    takes."""
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise TerminalError(REASON_INVALID_SPEC, f"environment.condaFile is no YAML: {error}") from None
    if not isinstance(parsed, dict):
        raise TerminalError(REASON_INVALID_SPEC, "environment.condaFile is no conda environment (a YAML mapping)")
    return parsed
