"""A ParallelJob data plane end to end: Azurite for blobs, the Batch emulator's node agent for tasks.

``ParallelRun.run`` does what the operator does: plan into a manifest, upload the driver, add one task per
mini-batch through the real azure-batch client (its manifest in the task's environment, driver and code as
resource files fetched by SAS URL), wait, aggregate.
The driver runs as ``python3 -S``: no site-packages, so anything beyond the standard library would fail.
"""

from __future__ import annotations

import itertools
import json
import textwrap
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta

import pytest
from azure.batch import models
from azure.batch.aio import BatchClient
from tests.emulator.batch.conftest import BatchEmulator, client, emulator

from amlops.azure.blob import BlobFolder, BlobRangeReader, BlobStore, JsonFolder
from amlops.emulator.azurite import Azurite, azurite_blob
from amlops.external.paralleljob_output import OUTPUT_FILE, Totals, aggregate
from amlops.external.paralleljob_plan import (
    InputItem,
    PlanIndex,
    PlanSpec,
    manifest_prefix,
    read_chunk,
    results_prefix,
    write_manifest,
)
from amlops.runtime.command import (
    DRIVER_FILE,
    MINI_BATCH_VARIABLE,
    code_dir_for_prefix,
    driver_command_line,
    driver_source,
)

__all__ = ["client", "emulator"]  # the Batch emulator fixtures, shared with tests/emulator/batch

SAS_LIFETIME = timedelta(hours=1)
_job_numbers = itertools.count()


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    with azurite_blob(tmp_path_factory.mktemp("azurite")) as running:
        yield running


@pytest.fixture
async def store(azurite: Azurite) -> AsyncIterator[BlobStore]:
    async with BlobStore.from_connection_string(azurite.connection_string) as blobs:
        for container in ("data", "code", "out"):
            await blobs.create_container(container)
        yield blobs


@dataclass
class Outcome:
    job_id: str
    plan: PlanIndex
    totals: Totals
    output: str  # parallel_run_step.txt
    results: BlobFolder
    output_folder: BlobFolder
    tasks: dict[str, models.BatchTask]


@dataclass
class ParallelRun:
    emulator: BatchEmulator
    client: BatchClient
    store: BlobStore

    async def upload_inputs(self, files: Mapping[str, bytes]) -> BlobFolder:
        folder = BlobFolder("data", f"job-{next(_job_numbers)}/inputs/")
        await self.store.upload_files(folder, dict(files))
        return folder

    async def run(
        self,
        inputs: BlobFolder,
        entry_script: str,
        spec: PlanSpec,
        *,
        run_timeout: int = 30,
        max_retries: int = 0,
        program_arguments: str = "",
    ) -> Outcome:
        job_id = f"pj-{next(_job_numbers)}"
        code = BlobFolder("code", f"{job_id}/src/")
        await self.store.upload_files(code, {"score.py": entry_script})
        output = BlobFolder("out", f"{job_id}/")
        plan_folder = BlobFolder("out", manifest_prefix(output.prefix, job_id))
        results = BlobFolder("out", results_prefix(output.prefix, job_id))

        listing = (InputItem(b.name, b.size, b.etag) async for b in self.store.list_folder(inputs))
        index = await write_manifest(
            listing, spec, JsonFolder(self.store, plan_folder), BlobRangeReader(self.store, inputs)
        )
        await self.store.write(plan_folder, DRIVER_FILE, driver_source(), "text/x-python")

        await self.emulator.ready_pool(self.client, job_id, dedicated=1, slots=4)
        await self.client.create_job(
            models.BatchJobCreateOptions(id=job_id, pool_info=models.BatchPoolInfo(pool_id=job_id))
        )
        command = driver_command_line(
            mini_batch=f"env:{MINI_BATCH_VARIABLE}",
            inputs=self.store.folder_sas_url(inputs, SAS_LIFETIME),
            results=self.store.folder_sas_url(results, SAS_LIFETIME, write=True),
            entry_script="score.py",
            code_dir=code_dir_for_prefix(code.prefix),
            timeout=run_timeout,
            append_row=True,
            program_arguments=program_arguments,
            python=("python3", "-S"),
        )
        code_url = self.store.folder_sas_url(BlobFolder(code.container), SAS_LIFETIME)
        tasks = [
            models.BatchTaskCreateOptions(
                id=f"mb-{mini_batch.index}",
                command_line=command,
                constraints=models.BatchTaskConstraints(max_task_retry_count=max_retries),
                resource_files=[
                    models.ResourceFile(
                        http_url=self.store.blob_sas_url(plan_folder, DRIVER_FILE, SAS_LIFETIME), file_path=DRIVER_FILE
                    ),
                    models.ResourceFile(storage_container_url=code_url, blob_prefix=code.prefix, file_path="code"),
                ],
                environment_settings=[
                    models.EnvironmentSetting(name=MINI_BATCH_VARIABLE, value=json.dumps(mini_batch.to_json()))
                ],
            )
            for number in range((index.count + index.chunk - 1) // index.chunk)
            for mini_batch in await read_chunk(JsonFolder(self.store, plan_folder), number)
        ]
        await self.client.create_tasks(job_id, tasks)
        await self.emulator.run_to_completion(self.client, job_id, index.count, within=120)

        totals = await aggregate(self.store, results, output, index.count)
        text = (await self.store.read(output, OUTPUT_FILE) or b"").decode()
        task_states = {t.id: t async for t in self.client.list_tasks(job_id) if t.id}
        return Outcome(job_id, index, totals, text, results, output, task_states)


@pytest.fixture
def parallel(emulator: BatchEmulator, client: BatchClient, store: BlobStore) -> ParallelRun:
    return ParallelRun(emulator, client, store)


def script(source: str) -> str:
    """An entry script from an indented test string."""
    return textwrap.dedent(source).lstrip()
