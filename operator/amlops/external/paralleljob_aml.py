"""ParallelJob spec → the arguments of azure-ai-ml's own ``parallel_run_function`` and of the pipeline job around
it, pure: plain data in azure-ai-ml's parameter names, no SDK object (``azure/ml_jobs.py`` builds those).

A parallel job exists in Azure ML's REST API only as a node of a pipeline job ("How to use parallel job in
pipeline"): the pipeline job carries the object's identity (name, experiment, display name, description, tags,
properties, default compute), its one node :data:`NODE` carries everything ``parallel_run_function`` takes.

Nothing here imports azure-ai-ml: its import costs seconds and tens of MB, paid only when a ParallelJob targets an
AmlCompute.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from typing import Any

from amlops.api.paralleljob import Identity, ParallelJobSpec
from amlops.external.paralleljob_map import Counts
from amlops.reconcile.errors import TerminalError

# The node's name inside the pipeline job (and the child job's display name in Azure ML Studio).
NODE = "parallel"
# azure-ai-ml requires an environment on a parallel task; the spec may leave the image out (the Batch backend then
# runs on the node's own Python). Azure ML's curated base image of the seed's era (openmpi + Python): what the
# parallel runtime's own examples use.
DEFAULT_IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest"
# Azure ML job names: "^[a-zA-Z0-9][a-zA-Z0-9\-_]{0,254}$" (the jobs REST API's name rule).
_JOB_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9\-_]{0,254}$")
# What azure-ai-ml takes as a parallel task's code besides a local folder: a URL, or a code asset (name:version).
_REMOTE_CODE = re.compile(r"^(https://[^\s/]+/\S+|azureml:[A-Za-z0-9_.-]+:[A-Za-z0-9_.-]+)$")
REASON_INVALID_SPEC = "InvalidSpec"
_MINI_BATCH_SIZE = re.compile(r"^\s*([0-9]+)\s*([KkMmGg][Bb]?|[Bb])?\s*$")


def job_name(uid: str, attempt: int = 0, prefix: str = "pj") -> str:
    """The Azure ML job's name, ``<prefix>-<uid>[-<attempt>]``, from the object's uid: a submission repeated after a
    crash finds the job the first one created instead of creating a second one. ``attempt`` > 0: a new job for the
    same object (a resume after suspend), which must not collide with the canceled one."""
    if attempt < 0:
        raise ValueError(f"attempt must be 0 or more, not {attempt}")
    name = f"{prefix}-{uid}" if attempt == 0 else f"{prefix}-{uid}-{attempt}"
    if not _JOB_NAME.match(name):
        raise ValueError(f"{uid!r} makes no Azure ML job name")
    return name


def mini_batch_size(value: str) -> str:
    """The spec's size ("10", " 5 ", "1kb", "2M", "64B") in azure-ai-ml's own form (``^\\d+([kKmMgG][bB])*$``):
    a count or bytes as digits, else digits and KB/MB/GB. The schema already refused anything else."""
    match = _MINI_BATCH_SIZE.match(value)
    if match is None:
        raise ValueError(f"miniBatchSize {value!r} is no count or size")
    digits, unit = match.group(1), (match.group(2) or "").upper()
    return digits if unit in ("", "B") else f"{digits}{unit[0]}B"


@dataclass(frozen=True)
class Data:
    """An ``Input``/``Output`` of azure-ai-ml: its asset type and where it is (``https://`` blob URI,
    ``azureml://datastores/<ds>/paths/<p>``, or an ``azureml:<name>:<version>`` data asset), or for a literal
    input (string, integer, number, boolean) its ``value``."""

    type: str
    path: str | None
    value: str | None = None


@dataclass(frozen=True)
class Environment:
    """``azure.ai.ml.entities.Environment``: an image, and a conda file (a path inside the code folder) and pip
    lines that ``azure/ml_jobs.py`` merges into one conda specification."""

    image: str
    conda_file: str | None = None
    pip_requirements: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunFunction:
    """``azure.ai.ml.parallel.RunFunction``."""

    code: str
    entry_script: str
    environment: Environment
    program_arguments: str | None = None
    append_row_to: str | None = None


@dataclass(frozen=True)
class ParallelRun:
    """Everything for ``parallel_run_function(**parallel, task=..., inputs=..., outputs=...)`` and the pipeline
    job around it (``job``: name, experiment_name, display_name, description, tags, properties, compute)."""

    job: dict[str, Any]
    parallel: dict[str, Any]
    task: RunFunction
    inputs: dict[str, Data] = field(default_factory=dict)
    outputs: dict[str, Data] = field(default_factory=dict)


def remote_code(code: str) -> str:
    """``task.code`` as azure-ai-ml takes it: an ``https://`` folder URI or an ``azureml:<name>:<version>`` code
    asset. Anything else azure-ai-ml would read as a local folder of the operator's (or refuse): InvalidSpec before
    anything is created. (The schema lets any string through today: the one oracle in
    tests/unit/test_paralleljob_aml.py found it.)"""
    if not _REMOTE_CODE.match(code):
        raise TerminalError(
            REASON_INVALID_SPEC,
            f"task.code {code[:200]!r} is no https:// folder URI and no azureml:<name>:<version> code asset",
        )
    return code


def parallel_run(spec: ParallelJobSpec, name: str, local_code: str | None = None) -> ParallelRun:
    """The seed's ``parallel_run_function`` arguments for ``spec``, as the pipeline job ``name``.

    ``local_code``: the local folder the caller wrote ``task.codeConfigMap``'s files to (azure-ai-ml uploads it to
    the workspace's datastore); without it, ``task.code`` (:func:`remote_code`)."""
    code = local_code if local_code is not None else remote_code(spec.task.code or "")
    return ParallelRun(
        job=_job(spec, name),
        parallel=_parallel(spec),
        task=_task(spec, code),
        inputs={key: Data(value.type, value.uri, value.value) for key, value in spec.inputs.items()},
        outputs={key: Data(value.type, value.uri) for key, value in spec.outputs.items()},
    )


def _job(spec: ParallelJobSpec, name: str) -> dict[str, Any]:
    """The pipeline job's own fields: the object's description, tags and properties reach Azure there."""
    job: dict[str, Any] = {
        "name": name,
        "compute": spec.compute.name,
        "tags": dict(spec.tags),
        "properties": dict(spec.properties),
    }
    for key, value in (
        ("experiment_name", spec.experiment_name),
        ("display_name", spec.display_name),
        ("description", spec.description),
    ):
        if value is not None:
            job[key] = value
    return job


def _parallel(spec: ParallelJobSpec) -> dict[str, Any]:
    """``parallel_run_function``'s scalar keywords, and ``resources`` and ``identity`` when given (absent: Azure
    ML's own choice, as the seed's). ``identity`` is plain data here (:func:`identity`); azure-ai-ml's entity is
    built in ``paralleljob_aml_job.py``. ``compute.instanceType`` is the Batch backend's, never sent."""
    parallel: dict[str, Any] = {
        "name": NODE,
        "display_name": spec.display_name or NODE,
        "input_data": spec.input_data,
        "error_threshold": spec.error_threshold,
        "mini_batch_error_threshold": spec.mini_batch_error_threshold,
        "retry_settings": {"max_retries": spec.retry_settings.max_retries, "timeout": spec.retry_settings.timeout},
        "logging_level": spec.logging_level,
        "max_concurrency_per_instance": spec.max_concurrency_per_instance,
        "instance_count": spec.instance_count,
        "environment_variables": dict(spec.environment_variables),
        "is_deterministic": spec.is_deterministic,
    }
    resources = spec.resources
    for key, value in (
        ("instance_type", resources.instance_type if resources else None),
        ("shm_size", resources.shm_size if resources else None),
        ("docker_args", resources.docker_args if resources else None),
        ("identity", identity(spec.identity)),
    ):
        if value is not None:
            parallel[key] = value
    if spec.partition_keys:
        # azure-ai-ml: "If both partition_keys and mini_batch_size are specified, the partition keys will take
        # effect": the size is left out rather than sent and ignored.
        parallel["partition_keys"] = list(spec.partition_keys)
    elif spec.mini_batch_size is not None:  # absent: azure-ai-ml's (and Azure ML's) default, 10 files or 1 MB
        parallel["mini_batch_size"] = mini_batch_size(spec.mini_batch_size)
    return parallel


def identity(given: Identity | None) -> dict[str, str] | None:
    """A spec's ``identity`` (ParallelJob's, CommandJob's) in azure-ai-ml's YAML form: ``type`` (managed,
    user_identity, aml_token) and, for a user-assigned managed identity, the ids given (``client_id``,
    ``object_id``, ``resource_id``)."""
    if given is None:
        return None
    ids = {"client_id": given.client_id, "object_id": given.object_id, "resource_id": given.resource_id}
    return {"type": given.type, **{k: v for k, v in ids.items() if v is not None}}


def _task(spec: ParallelJobSpec, code: str) -> RunFunction:
    environment = spec.task.environment
    return RunFunction(
        code=code,
        entry_script=spec.task.entry_script,
        environment=Environment(
            image=(environment.image if environment and environment.image else DEFAULT_IMAGE),
            conda_file=environment.conda_file if environment else None,
            pip_requirements=tuple(environment.pip_requirements) if environment else (),
        ),
        program_arguments=spec.task.program_arguments,
        append_row_to=spec.task.append_row_to,
    )


def conda_specification(conda_file: dict[str, Any] | None, pip_requirements: tuple[str, ...]) -> dict[str, Any] | None:
    """One conda specification for azure-ai-ml's ``Environment(conda_file=...)``: the spec's conda file (parsed)
    with ``pipRequirements`` appended to its ``pip:`` section (Azure ML builds the image from it, so conda
    packages are honoured there, unlike on Batch). None: neither is given, the image is used as it is."""
    if conda_file is None and not pip_requirements:
        return None
    conda = dict(conda_file or {"name": "amlops-parallel", "dependencies": ["python=3.11", "pip"]})
    dependencies = list(conda.get("dependencies") or [])
    if pip_requirements:
        sections = [d for d in dependencies if isinstance(d, dict) and "pip" in d]
        pip = [*(sections[0]["pip"] if sections else []), *pip_requirements]
        dependencies = [d for d in dependencies if not (isinstance(d, dict) and "pip" in d)]
        if "pip" not in dependencies:
            dependencies.append("pip")
        dependencies.append({"pip": pip})
    conda["dependencies"] = dependencies
    return conda


def report_counts(text: str, total: int | None = None, max_retries: int | None = None) -> Counts:
    """The parallel runtime's ``logs/sys/job_report/processed_mini-batches.csv`` → the counts the Batch backend
    reports too (``paralleljob_map.status_fields``/``progress``). A row per pick of a mini-batch: a mini-batch picked
    again was retried; its last row decides it (RUN_DONE with no failed item succeeded; RUN_TIMEOUT / RUN_EXCEPTION,
    or fewer results than items, failed), its Succeeded/Failed columns count the items. ``total``: the mini-batches
    planned, when known; else the ones the report names (right once the job has finished).

    ``max_retries`` (``retry_settings.max_retries``) is given while the job runs: a mini-batch whose last pick
    failed with tries left will be picked again, so it is still pending, not failed (at most ``1 + max_retries``
    picks: the emulator's reading of the documentation table, ml/parallel.py)."""
    last: dict[int, dict[str, str]] = {}
    picks: dict[int, int] = {}
    for row in csv.DictReader(io.StringIO(text)):
        index = _int(row.get("Mini-batch Id"))
        if index is None:
            continue
        last[index] = row
        picks[index] = picks.get(index, 0) + 1
    if max_retries is not None:
        last = {i: row for i, row in last.items() if not _retried_later(row, max_retries)}
    # A mini-batch whose run() returned fewer results than items failed too ("How to use parallel job in pipeline":
    # it counts against mini_batch_error_threshold), as on the Batch backend (paralleljob_map.finished).
    failed = sorted(i for i, row in last.items() if row.get("Status") != "RUN_DONE" or (_int(row.get("Failed")) or 0))
    known = max(total or 0, len(last))
    return Counts(
        total=known,
        pending=known - len(last),
        succeeded=len(last) - len(failed),
        failed=len(failed),
        retried=sum(count - 1 for count in picks.values()),
        items_processed=sum(_int(row.get("Succeeded")) or 0 for row in last.values()),
        items_failed=sum(_int(row.get("Failed")) or 0 for row in last.values()),
        failed_indexes=tuple(failed),
    )


def _retried_later(row: dict[str, str], max_retries: int) -> bool:
    """A pick that raised or timed out with tries left (a run() that returned too few results is not retried)."""
    return row.get("Status") != "RUN_DONE" and (_int(row.get("Picked Count")) or 1) <= max_retries


# The first line of the emulator's progress overview ("<time> N mini-batches created (M items)."): the overview
# gives "the number of mini-batches (also known as tasks) created so far" (Azure ML's "Troubleshooting
# ParallelRunStep"); its wording is the emulator's (no public sample of the file was found).
_CREATED = re.compile(r"\b(\d+) mini-batches created\b")


def overview_total(text: str) -> int | None:
    """The mini-batches created so far, as the progress overview last says it (None: it says nothing of it)."""
    found = _CREATED.findall(text)
    return int(found[-1]) if found else None


def _int(value: str | None) -> int | None:
    try:
        return int(str(value).strip())
    except ValueError:
        return None
