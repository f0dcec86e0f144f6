"""ParallelJob: azure-ai-ml ``parallel_run_function`` run on a BatchCompute's account."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import Field

from amlops.api.common import ApiModel, StatusBase, deletion_protection_field
from amlops.api.kind import (
    AGE_COLUMN,
    READY_COLUMN,
    CustomResource,
    Definition,
    Names,
    PrinterColumn,
)


class ComputeRef(ApiModel):
    name: str = Field(min_length=1, description="Seed: compute. Name of a BatchCompute in this namespace.")
    pool_id: str | None = Field(default=None, description="Existing pool of that account to run on.")


class JobInput(ApiModel):
    uri: str = Field(min_length=1, description="Blob folder or file URI.")
    type: Literal["uri_folder", "uri_file", "mltable"] = Field(default="uri_folder")


class RetrySettings(ApiModel):
    max_retries: int = Field(default=3, ge=0, description="Seed: retry_settings.max_retries.")
    timeout: int = Field(default=60, ge=1, description="Seed: retry_settings.timeout, seconds per run() call.")


class TaskSpec(ApiModel):
    code: str = Field(min_length=1, description="Seed: task.code. Blob URI of the code folder.")
    entry_script: str = Field(min_length=1, description="Seed: task.entry_script, relative to code.")
    program_arguments: str | None = Field(default=None, description="Seed: task.program_arguments.")
    append_row_to: str | None = Field(default=None, description="Seed: task.append_row_to, e.g. ${{outputs.out}}.")


class ParallelJobSpec(ApiModel):
    compute: ComputeRef = Field(description="Seed: compute.")
    display_name: str | None = Field(default=None, description="Seed: display_name.")
    description: str | None = Field(default=None, description="Seed: description.")
    inputs: dict[str, JobInput] = Field(default_factory=dict, description="Seed: inputs.")
    outputs: dict[str, JobInput] = Field(default_factory=dict, description="Seed: outputs.")
    input_data: str = Field(min_length=1, description="Seed: input_data, e.g. ${{inputs.data}}.")
    mini_batch_size: str = Field(default="1", description="Seed: mini_batch_size (files, or a size like 10MB).")
    max_concurrency_per_instance: int = Field(default=1, ge=1, description="Seed: max_concurrency_per_instance.")
    instance_count: int = Field(default=1, ge=1, description="Seed: instance_count.")
    error_threshold: int = Field(default=-1, ge=-1, description="Seed: error_threshold; -1 ignores failures.")
    mini_batch_error_threshold: int = Field(
        default=-1, ge=-1, description="Seed: mini_batch_error_threshold; -1 ignores failures."
    )
    retry_settings: RetrySettings = Field(default_factory=RetrySettings, description="Seed: retry_settings.")
    logging_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        default="INFO", description="Seed: logging_level."
    )
    task: TaskSpec = Field(description="Seed: task (RunFunction).")
    deletion_protection: bool = deletion_protection_field()
    suspend: bool = Field(default=False, description="Stop adding and running mini-batches; resume with false.")


class MiniBatchCounts(ApiModel):
    total: int = 0
    pending: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    retried: int = 0


class ParallelJobStatus(StatusBase):
    phase: str | None = Field(default=None, description="Pending, Running, Suspended, Complete, Failed.")
    start_time: datetime | None = None
    completion_time: datetime | None = None
    mini_batches: MiniBatchCounts | None = None
    progress: str | None = Field(default=None, description="Completed/total mini-batches, N/M.")


class ParallelJob(CustomResource):
    spec_model: ClassVar = ParallelJobSpec
    status_model: ClassVar = ParallelJobStatus
    definition: ClassVar = Definition(
        names=Names("ParallelJob", "paralleljobs", "paralleljob", ("pj",)),
        description="A parallel run (azure-ai-ml parallel_run_function) executed on a BatchCompute's account.",
        printer_columns=(
            PrinterColumn("Compute", ".spec.compute.name"),
            PrinterColumn("Phase", ".status.phase"),
            PrinterColumn("Progress", ".status.progress"),
            READY_COLUMN,
            AGE_COLUMN,
        ),
    )
