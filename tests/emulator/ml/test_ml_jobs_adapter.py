"""The operator's Azure ML jobs adapter (``azure/ml_jobs.py``) against the emulator: a ParallelJob spec mapped
(``external/paralleljob_aml.py``), built with azure-ai-ml's own ``parallel_run_function`` in a pipeline job
(``external/paralleljob_aml_job.py``) and submitted with the credential the operator resolves for a namespace's
credentials Secret (``azure/credentials.from_secret``: azure-identity's ``ClientSecretCredential`` against the
emulator's identity platform), reached from azure-ai-ml's worker threads through the event loop.

Evidence for what Azure answers is cited where the emulator implements it (ml/jobs.py, ml/pipelines.py,
ml/parallel.py: "How to use parallel job in pipeline", the ParallelRunStep performance tuning guide for
``processed_mini-batches.csv``); here the adapter is checked against those answers.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from azure.ai.ml import MLClient
from azure.storage.blob import BlobServiceClient

from amlops.api.paralleljob import ParallelJobSpec
from amlops.azure import credentials
from amlops.azure.ml import WorkspaceId
from amlops.azure.ml_jobs import JobState, MlJobs, connect
from amlops.external import paralleljob_aml as aml
from amlops.external.paralleljob_aml_job import build_pipeline_job
from amlops.external.paralleljob_map import progress
from amlops.reconcile.errors import TerminalError
from amlops.settings import Settings
from amlops_emulator.identity import DEFAULT_PRINCIPAL
from amlops_emulator.seed import DEFAULT_RESOURCE_GROUP, DEFAULT_SUBSCRIPTION, DEFAULT_WORKSPACE
from tests.support.jobs import WITHIN, blobstore, unique
from tests.support.mlclient import storage_env
from tests.support.processes import EmulatorProcess
from tests.support.seed import IRIS_CSV, ITEMS, MLTABLE, MODEL, ROWS, SCORE_SCRIPT

pytestmark = pytest.mark.emulator

WS = WorkspaceId(DEFAULT_SUBSCRIPTION, DEFAULT_RESOURCE_GROUP, DEFAULT_WORKSPACE)
FAIL = """
def init():
    raise RuntimeError("no model here")


def run(mini_batch):
    return mini_batch
"""


@pytest.fixture
async def jobs(azure_ml: EmulatorProcess, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[MlJobs]:
    """The adapter as the operator builds it: settings from what the emulator says, a credentials Secret's
    service principal, azure-ai-ml's storage environment for this test only (it uploads the code folder)."""
    endpoints = azure_ml.run.endpoints
    for name, value in storage_env(endpoints).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AZUREML_CURRENT_CLOUD", "")  # MLClient writes it: restored after the test
    settings = Settings(
        arm_endpoint=azure_ml.arm_url,
        authority_host=azure_ml.arm_url,
        ca_bundle=Path(azure_ml.ca_file),
        storage_endpoint_suffix=endpoints["storage"]["storageEndpointSuffix"],
    )
    secret = {
        "AZURE_TENANT_ID": DEFAULT_PRINCIPAL.tenant_id,
        "AZURE_CLIENT_ID": DEFAULT_PRINCIPAL.client_id,
        "AZURE_CLIENT_SECRET": DEFAULT_PRINCIPAL.client_secret,
    }
    credential = credentials.from_secret(secret, settings.authority_host, azure_ml.ca_file)
    try:
        yield await connect(credential, WS, settings)
    finally:
        await credential.close()


def seed_spec(cluster: str, prefix: str, code_config_map: bool = True, **overrides: Any) -> ParallelJobSpec:
    """The seed's tabular scoring as a ParallelJob spec (inputs on the workspace's datastore)."""
    store = "azureml://datastores/workspaceblobstore/paths"
    return ParallelJobSpec.model_validate(
        {
            "compute": {"name": cluster},
            "experimentName": "amlops",
            "displayName": "Batch Score with Tabular Dataset",
            "tags": {"owner": "amlops"},
            "inputs": {
                "job_data_path": {"uri": f"{store}/{prefix}/iris/", "type": "mltable"},
                "score_model": {"uri": f"{store}/{prefix}/model/"},
            },
            "outputs": {"job_output_path": {"uri": f"{store}/{prefix}/out/"}},
            "inputData": "${{inputs.job_data_path}}",
            "miniBatchSize": "100",
            "maxConcurrencyPerInstance": 2,
            "errorThreshold": 5,
            "miniBatchErrorThreshold": 5,
            "retrySettings": {"maxRetries": 2, "timeout": 60},
            "task": {
                "codeConfigMap": "score-code",
                "entryScript": "score.py",
                "programArguments": "--model ${{inputs.score_model}}",
                "appendRowTo": "${{outputs.job_output_path}}",
            },
            **overrides,
        }
    )


def upload_data(blobs: BlobServiceClient, container: str, prefix: str) -> None:
    data = blobs.get_container_client(container)
    data.upload_blob(f"{prefix}/iris/iris.csv", IRIS_CSV.encode(), overwrite=True)
    data.upload_blob(f"{prefix}/iris/MLTable", MLTABLE.encode(), overwrite=True)
    data.upload_blob(f"{prefix}/model/model.txt", MODEL.encode(), overwrite=True)


def code_folder(tmp_path: Path, script: str) -> str:
    """Where the operator writes a codeConfigMap's files before azure-ai-ml uploads them."""
    folder = tmp_path / "code"
    folder.mkdir()
    (folder / "score.py").write_text(script)
    return str(folder)


async def finished(jobs: MlJobs, name: str) -> JobState:
    deadline = time.monotonic() + WITHIN
    while True:
        state = await jobs.get(name)
        assert state is not None
        if state.finished:
            return state
        assert time.monotonic() < deadline, f"job {name} not finished within {WITHIN} s (now {state.status})"
        await asyncio.sleep(0.2)  # polling interval of a wait with a deadline


@pytest.fixture
def container(ml: MLClient) -> str:
    return blobstore(ml)


async def test_the_seeds_shape_from_a_spec_completes_with_one_row_per_item_and_a_resubmission_finds_it(
    jobs: MlJobs, cluster: str, tmp_path: Path, blobs: BlobServiceClient, container: str
) -> None:
    prefix = unique("adapter")
    upload_data(blobs, container, prefix)
    name = aml.job_name(str(uuid.uuid4()))
    run = aml.parallel_run(seed_spec(cluster, prefix), name, code_folder(tmp_path, SCORE_SCRIPT))

    submitted = await jobs.submit(lambda: build_pipeline_job(run, None))
    again = await jobs.submit(lambda: build_pipeline_job(run, None))  # the operator crashed before recording it

    assert submitted.name == name
    assert again.name == name
    assert name in {job["name"] for job in await jobs.list_jobs()}
    listed = {job["name"]: job for job in await jobs.list_jobs()}[name]
    assert (listed["type"], listed["compute"], listed["owner"]) == ("pipeline", cluster, None)
    state = await finished(jobs, name)
    assert state.status == "Completed"
    assert state.child is not None
    assert state.studio_url
    assert state.outputs == {"job_output_path": f"azureml://datastores/workspaceblobstore/paths/{prefix}/out/"}
    statuses = {job["name"]: job["status"] for job in await jobs.list_jobs()}
    assert statuses[name] == "Completed"
    assert [n for n in statuses if n == name] == [name], "one job of that name"
    rows = blobs.get_blob_client(container, f"{prefix}/out/parallel_run_step.txt").download_blob().readall().decode()
    assert sorted(rows.splitlines(), key=lambda row: int(row.split()[0])) == ROWS
    report = await jobs.report(state.child.name)
    assert report is not None
    counts = aml.report_counts(report)
    assert counts.failed == 0
    assert counts.items_processed == ITEMS
    assert counts.succeeded == counts.total > 1, "100 bytes per mini-batch cut 40 rows into several"
    assert progress(counts, 10.0)["progress"] == f"{counts.total}/{counts.total}", "the Batch backend's contract"


async def test_jobs_submitted_together_need_no_thread_of_the_event_loops_own(
    jobs: MlJobs, cluster: str, tmp_path: Path
) -> None:
    """azure-ai-ml waits in its threads for tokens the operator's async credential fetches on the event loop, and
    every aiohttp request of the loop first runs its .netrc and proxy lookups in the loop's default executor
    (``trust_env``). azure-ai-ml's calls therefore run in a pool of their own: in the default executor, jobs
    submitted together held every thread of it while waiting for a token that needed one (each round ended
    ``TOKEN_WAIT_SECONDS`` later as "Azure unreachable"). Here the default executor has a single thread and the
    credential no token yet: four jobs submitted at once are all created."""
    loop = asyncio.get_running_loop()
    single = ThreadPoolExecutor(1)
    loop.set_default_executor(single)
    try:
        code = code_folder(tmp_path, SCORE_SCRIPT)
        runs = [aml.parallel_run(seed_spec(cluster, unique("together")), aml.job_name(str(uuid.uuid4())), code)
                for _ in range(4)]  # fmt: skip
        states = await asyncio.gather(*(jobs.submit(functools.partial(build_pipeline_job, run, None)) for run in runs))
    finally:
        loop.set_default_executor(ThreadPoolExecutor())
        single.shutdown(wait=False)

    assert sorted(state.name for state in states) == sorted(run.job["name"] for run in runs)
    listed = {job["name"] for job in await jobs.list_jobs()}
    assert {run.job["name"] for run in runs} <= listed


async def test_a_failed_jobs_state_and_cancel_on_a_finished_job(
    jobs: MlJobs, cluster: str, tmp_path: Path, blobs: BlobServiceClient, container: str
) -> None:
    """init() raising fails the job (ml/parallel.py: "an init() that fails fails the job"); cancel afterwards
    changes nothing and raises nothing."""
    prefix = unique("adapter")
    upload_data(blobs, container, prefix)
    name = aml.job_name(str(uuid.uuid4()))
    run = aml.parallel_run(seed_spec(cluster, prefix), name, code_folder(tmp_path, FAIL))
    await jobs.submit(lambda: build_pipeline_job(run, None))

    state = await finished(jobs, name)
    await jobs.cancel(name)

    assert state.status == "Failed"
    assert state.error is not None
    assert "no model here" in state.error.message
    after = await jobs.get(name)
    assert after is not None
    assert after.status == "Failed"


async def test_cancel_a_running_job_and_a_missing_one(
    jobs: MlJobs, cluster: str, tmp_path: Path, blobs: BlobServiceClient, container: str
) -> None:
    prefix = unique("adapter")
    upload_data(blobs, container, prefix)
    name = aml.job_name(str(uuid.uuid4()))
    slow = SCORE_SCRIPT.replace("def run(input_data):", "def run(input_data):\n    import time; time.sleep(600)")
    run = aml.parallel_run(seed_spec(cluster, prefix), name, code_folder(tmp_path, slow))
    await jobs.submit(lambda: build_pipeline_job(run, None))

    await jobs.cancel(name)
    await jobs.cancel(name)  # idempotent
    await jobs.cancel(aml.job_name(str(uuid.uuid4())))  # no such job: nothing to cancel

    state = await finished(jobs, name)
    assert state.status == "Canceled"
    assert await jobs.get(aml.job_name(str(uuid.uuid4()))) is None


async def test_an_azure_refusal_leaves_through_the_funnel(jobs: MlJobs, tmp_path: Path) -> None:
    """A compute the workspace does not have: Azure refuses the pipeline job; the adapter raises the engine's
    error with Azure's code, nothing else."""
    name = aml.job_name(str(uuid.uuid4()))
    run = aml.parallel_run(seed_spec("no-such-cluster", unique("adapter")), name, code_folder(tmp_path, SCORE_SCRIPT))
    with pytest.raises(TerminalError) as refused:
        await jobs.submit(lambda: build_pipeline_job(run, None))
    assert refused.value.reason == "ResourceNotFound"
    assert "no-such-cluster" in refused.value.message
    assert await jobs.get(name) is None


async def test_a_credential_without_azure_ml_tokens_is_refused_with_a_reason(
    azure_ml: EmulatorProcess, monkeypatch: pytest.MonkeyPatch, cluster: str, tmp_path: Path
) -> None:
    """The operator's fixed token (``AMLOPS_STATIC_TOKEN``) is no JWT: azure-ai-ml cannot check its audience
    before it submits a pipeline job. Stalled-worthy ``AuthenticationFailed``, not an internal error."""
    for key, value in storage_env(azure_ml.run.endpoints).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AZUREML_CURRENT_CLOUD", "")
    settings = Settings(
        arm_endpoint=azure_ml.arm_url,
        ca_bundle=Path(azure_ml.ca_file),
        storage_endpoint_suffix=azure_ml.run.endpoints["storage"]["storageEndpointSuffix"],
    )
    static = await connect(credentials.StaticTokenCredential(azure_ml.token), WS, settings)
    name = aml.job_name(str(uuid.uuid4()))
    run = aml.parallel_run(seed_spec(cluster, unique("adapter")), name, code_folder(tmp_path, SCORE_SCRIPT))
    with pytest.raises(TerminalError) as refused:
        await static.submit(lambda: build_pipeline_job(run, None))
    assert refused.value.reason == "AuthenticationFailed"
    assert "https://ml.azure.com/" in refused.value.message
