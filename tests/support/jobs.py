"""Command and pipeline jobs through azure-ai-ml's real ``MLClient`` against the emulator: what the job tests share (a
cluster to run on, a name, a wait for the end with a deadline)."""

from __future__ import annotations

import time
import uuid

from azure.ai.ml import MLClient
from azure.ai.ml.entities import AmlCompute, Command, Environment, Job
from azure.storage.blob import BlobServiceClient

from amlops_emulator.seed import DEFAULT_RESOURCE_GROUP, DEFAULT_SUBSCRIPTION, DEFAULT_WORKSPACE
from tests.support.mlclient import ml_client
from tests.support.processes import EmulatorProcess

WITHIN = 120.0  # real seconds a job may take on a loaded machine (node allocation + preparation + the script)
TERMINAL = ("Completed", "Failed", "Canceled")
# The image is not used (processes run with this machine's interpreter); azure-ai-ml needs one to register.
ENVIRONMENT = Environment(image="mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest")
# Says it started ($PROBE/started), then runs until killed: for cancel and timeout tests.
WAIT_SCRIPT = """
import os, pathlib, time
pathlib.Path(os.environ["PROBE"], "started").write_text("yes")
while True:
    time.sleep(0.05)
"""


def blobstore(ml: MLClient) -> str:
    """The container of the workspace's ``workspaceblobstore``: ``azureml-blobstore-{workspace id}``."""
    return f"azureml-blobstore-{ml.workspaces.get()._workspace_id}"


def blob_text(blobs: BlobServiceClient, ml: MLClient, name: str) -> str:
    """A blob of ``workspaceblobstore``, as text."""
    return blobs.get_blob_client(blobstore(ml), name).download_blob().readall().decode()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def client(azure_ml: EmulatorProcess) -> MLClient:
    """An ``MLClient`` on ``azure_ml`` for module fixtures (no storage environment: it uploads nothing). It names
    the emulator's storage suffix: azure-ai-ml registers a cloud once per process, and the first client's
    metadata is what later clients of the same emulator get."""
    return ml_client(
        azure_ml.arm_url,
        azure_ml.ca_file,
        DEFAULT_SUBSCRIPTION,
        DEFAULT_RESOURCE_GROUP,
        DEFAULT_WORKSPACE,
        storage_endpoint=azure_ml.run.endpoints["storage"]["storageEndpointSuffix"],
        polling_interval=0.2,
    )


def create_cluster(azure_ml: EmulatorProcess, max_instances: int = 2) -> str:
    """A new AmlCompute (0..``max_instances`` nodes), created through the MLClient surface; its name."""
    name = unique("cpu")
    client(azure_ml).compute.begin_create_or_update(
        AmlCompute(
            name=name,
            size="Standard_DS3_v2",
            min_instances=0,
            max_instances=max_instances,
            idle_time_before_scale_down=120,
        )
    ).result()
    return name


def finished_job(ml: MLClient, name: str, within: float = WITHIN) -> Job:
    """The job (any type) once it reached a terminal status; fails the test after ``within`` real seconds."""
    deadline = time.monotonic() + within
    job = ml.jobs.get(name)
    while job.status not in TERMINAL:
        if time.monotonic() > deadline:
            raise AssertionError(f"job {name} not finished within {within} s (now {job.status})")
        time.sleep(0.2)  # polling interval of a wait with a deadline, not a synchronisation
        job = ml.jobs.get(name)
    assert isinstance(job, Job)
    return job


def get_command(ml: MLClient, name: str) -> Command:
    job = ml.jobs.get(name)
    assert isinstance(job, Command)
    return job


def finished(ml: MLClient, name: str, within: float = WITHIN) -> Command:
    """The command job once it reached a terminal status; fails the test after ``within`` real seconds."""
    job = finished_job(ml, name, within)
    assert isinstance(job, Command)
    return job
