"""The seed's ``parallel_run_function(...)`` in a pipeline job, built with azure-ai-ml itself from
:func:`~amlops.external.paralleljob_aml.parallel_run`'s plain arguments.

Imports azure-ai-ml: imported only on the way to a ParallelJob on an AmlCompute (tests/unit/test_lazy_imports.py).
"""

from __future__ import annotations

from typing import Any

from azure.ai.ml import Input, Output
from azure.ai.ml.entities import (
    AmlTokenConfiguration,
    Environment,
    ManagedIdentityConfiguration,
    PipelineJob,
    PipelineJobSettings,
    UserIdentityConfiguration,
)
from azure.ai.ml.exceptions import MlException
from azure.ai.ml.parallel import RunFunction, parallel_run_function
from marshmallow import ValidationError

from amlops.external.paralleljob_aml import NODE, REASON_INVALID_SPEC, Data, ParallelRun
from amlops.reconcile.errors import TerminalError


def build_pipeline_job(run: ParallelRun, conda: dict[str, Any] | None) -> PipelineJob:
    """The seed's ``parallel_run_function(...)`` as the one node of a pipeline job, from :func:`parallel_run`'s
    plain arguments; ``conda``: :func:`conda_specification` (None: the image as it is). Raises azure-ai-ml's own
    errors' messages as ``InvalidSpec``: what azure-ai-ml refuses, Azure ML never sees."""
    try:
        return _build(run, conda)
    except MlException as error:
        raise TerminalError(REASON_INVALID_SPEC, error.message) from error
    except ValidationError as error:  # azure-ai-ml's schemas refuse a value before its own validation runs
        raise TerminalError(REASON_INVALID_SPEC, str(error.messages)) from error


def _input(data: Data) -> Input | str | int | float | bool:
    """A data input where it is, or a literal input's value as a Python value: ``parallel_run_function`` makes
    a literal of the matching type from it (its ``_parse_input``) and binds the value to the node."""
    if data.value is None:
        return Input(type=data.type, path=data.path)
    if data.type == "integer":
        return int(data.value)
    if data.type == "number":
        return float(data.value)
    if data.type == "boolean":
        return data.value.lower() == "true"
    return data.value


Identity = ManagedIdentityConfiguration | UserIdentityConfiguration | AmlTokenConfiguration


def identity_configuration(given: dict[str, str]) -> Identity:
    """:func:`~amlops.external.paralleljob_aml.identity`'s plain form → azure-ai-ml's identity configuration."""
    ids = {k: v for k, v in given.items() if k != "type"}
    if given["type"] == "managed":
        return ManagedIdentityConfiguration(**ids)
    if given["type"] == "user_identity":
        return UserIdentityConfiguration()
    return AmlTokenConfiguration()


def _build(run: ParallelRun, conda: dict[str, Any] | None) -> PipelineJob:
    task = run.task
    keywords = dict(run.parallel)
    if (given := keywords.pop("identity", None)) is not None:
        keywords["identity"] = identity_configuration(given)
    parallel = parallel_run_function(
        **keywords,
        inputs={key: _input(data) for key, data in run.inputs.items()},
        outputs={key: Output(type=data.type, path=data.path) for key, data in run.outputs.items()},
        task=RunFunction(
            code=task.code,
            entry_script=task.entry_script,
            environment=Environment(image=task.environment.image, conda_file=conda),
            program_arguments=task.program_arguments,
            append_row_to=task.append_row_to,
        ),
    )
    job = run.job
    pipeline = PipelineJob(
        settings=PipelineJobSettings(default_compute=job["compute"]),
        name=job["name"],
        jobs={NODE: parallel()},
        compute=job["compute"],
        experiment_name=job.get("experiment_name"),
        display_name=job.get("display_name"),
        description=job.get("description"),
        tags=job["tags"],
        properties=job["properties"],
    )
    validation = pipeline._validate()
    if not validation.passed:
        raise TerminalError(REASON_INVALID_SPEC, "; ".join(f"{k}: {v}" for k, v in validation.error_messages.items()))
    return pipeline
