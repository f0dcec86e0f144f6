"""Fixtures for azure-ai-ml's real ``MLClient`` against the emulator.

- ``azure_ml``: one ``amlops emulator --azurite`` process for the module (Azurite over HTTPS is its storage
  account); tests use names of their own, so they share it.
- ``ml``: an ``MLClient`` on it (tests/support/mlclient.py), with the environment azure-ai-ml's storage clients
  need set for this test only.
- ``blobs``: azure-storage-blob on the same Azurite, to check what azure-ai-ml uploaded.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from azure.ai.ml import MLClient
from azure.storage.blob import BlobServiceClient

import amlops_testbed as testbed
from amlops_emulator.azurite import DEVSTORE_KEY
from tests.support.jobs import create_cluster
from tests.support.mlclient import CURRENT_CLOUD, workspace_client
from tests.support.processes import EmulatorProcess


@pytest.fixture(scope="module")
def azure_ml(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    state = tmp_path_factory.mktemp("emulator") / "state"
    # An MLClient writes its cloud's name into the process's AZUREML_CURRENT_CLOUD; module fixtures build clients
    # outside a test's monkeypatch, so the module's emulator takes the variable back with it: a later import of
    # azure.ai.ml in a fresh interpreter (which inherits the environment) would fail on the unknown cloud.
    cloud = os.environ.get(CURRENT_CLOUD)
    emulator = EmulatorProcess(testbed.start_emulator(state, "--azurite", "--no-batch", speed=60.0, timeout=90.0))
    try:
        yield emulator
    finally:
        emulator.stop()
        if cloud is None:
            os.environ.pop(CURRENT_CLOUD, None)
        else:
            os.environ[CURRENT_CLOUD] = cloud


@pytest.fixture
def ml(azure_ml: EmulatorProcess, monkeypatch: pytest.MonkeyPatch) -> MLClient:
    return workspace_client(azure_ml, monkeypatch)


@pytest.fixture
def blobs(azure_ml: EmulatorProcess) -> Iterator[BlobServiceClient]:
    storage = azure_ml.run.endpoints["storage"]
    credential = {"account_name": storage["accountName"], "account_key": DEVSTORE_KEY}
    with BlobServiceClient(storage["serviceUrl"], credential=credential, connection_verify=azure_ml.ca_file) as client:
        yield client


@pytest.fixture(scope="module")
def cluster(azure_ml: EmulatorProcess) -> str:
    """One AmlCompute (0..2 nodes) for a module's jobs, created through the MLClient surface."""
    return create_cluster(azure_ml)
