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
from datetime import UTC, datetime, timedelta

import pytest
from azure.batch import models
from azure.batch.aio import BatchClient

from amlops.azure.blob import READ_WRITE, WRITE, BlobFolder, BlobRangeReader, BlobStore, JsonFolder
from amlops.external.paralleljob import input_names
from amlops.external.paralleljob_output import OUTPUT_FILE, Totals, aggregate
from amlops.external.paralleljob_plan import (
    InputItem,
    MiniBatch,
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
    code_file_path,
    driver_command_line,
    driver_environment,
    driver_source,
    input_paths,
    job_input_path,
    with_input_urls,
)
from amlops_emulator.azurite import Azurite, azurite_blob
from tests.emulator.batch.conftest import BatchEmulator, client, emulator

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
        expiry: datetime | None = None,
        job_inputs: Mapping[str, Mapping[str, bytes]] | None = None,
        literals: Mapping[str, str] | None = None,
    ) -> Outcome:
        """``job_inputs``: the inputs other than input_data (name → files), resource files of every task as the
        operator makes them; ``literals``: ``inputs.<name>`` → value. ``${{inputs.data}}`` is input_data."""
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
        job_inputs = job_inputs or {}
        sources = {name: BlobFolder("data", f"{job_id}/{name}/") for name in job_inputs}
        for name, files in job_inputs.items():
            await self.store.upload_files(sources[name], dict(files))
        kinds = {"data": "uri_folder", **dict.fromkeys(job_inputs, "uri_folder")}
        command = driver_command_line(
            mini_batch=f"env:{MINI_BATCH_VARIABLE}",
            entry_script="score.py",
            timeout=run_timeout,
            append_row=True,
            program_arguments=program_arguments,
            literals=literals,
            paths=input_paths("data", kinds, {}),
            python=("python3", "-S"),
        )
        # As the operator signs them: one read token per input, code file and the driver, read + write on the
        # summary and write on the rows of each task, nothing container-wide.
        sign = self.store.signer(expiry or datetime.now(UTC) + SAS_LIFETIME)
        resource_files = [
            models.ResourceFile(http_url=sign.url(plan_folder, DRIVER_FILE), file_path=DRIVER_FILE),
            models.ResourceFile(http_url=sign.url(code, "score.py"), file_path=code_file_path("score.py")),
            *(
                models.ResourceFile(http_url=sign.url(sources[name], blob), file_path=job_input_path(name, blob))
                for name, files in sorted(job_inputs.items())
                for blob in sorted(files)
            ),
        ]

        def environment(mini_batch: MiniBatch) -> list[models.EnvironmentSetting]:
            urls = {name: sign.url(inputs, name) for name in input_names(mini_batch)}
            manifest = json.dumps(with_input_urls(mini_batch.to_json(), urls))
            results_urls = driver_environment(
                sign.url(results, f"{mini_batch.index}.summary.json", READ_WRITE),
                sign.url(results, f"{mini_batch.index}.txt", WRITE),
            )
            return [
                *(models.EnvironmentSetting(name=e["name"], value=e["value"]) for e in results_urls),
                models.EnvironmentSetting(name=MINI_BATCH_VARIABLE, value=manifest),
            ]

        tasks = [
            models.BatchTaskCreateOptions(
                id=f"mb-{mini_batch.index}",
                command_line=command,
                constraints=models.BatchTaskConstraints(max_task_retry_count=max_retries),
                resource_files=resource_files,
                environment_settings=environment(mini_batch),
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
