"""azure-ai-ml's real ``MLClient`` pointed at the emulator: nothing it sends leaves the machine.

azure-ai-ml reads every endpoint from the cloud it is given (``cloud=``, ``cloud_metadata=``): the keys of
``azure.ai.ml._azure_environments.EndpointURLS``. All of them name the emulator's ARM URL here, except
``storage_endpoint``, the suffix azure-ai-ml appends to ``{account}.blob.`` for a datastore's account URL (see
:func:`storage_suffix`). ``connection_verify`` travels through MLClient's keyword arguments to every ARM service
client it builds, so the emulator's CA is trusted per client, not through the process environment.
``enable_telemetry=False``: azure-ai-ml would otherwise send Application Insights events.

``aml_resource_id`` is Azure's own audience, ``https://ml.azure.com/`` (``_azure_environments.py``): azure-ai-ml
uses it only to ask the credential for an Azure ML token, which it sends with a pipeline job in
``x-azureml-token`` after checking, without verifying a signature, that the token is a JWT for that audience
(``JobOperations._set_headers_with_user_aml_token``). :class:`EmulatorTokenCredential` answers that scope with
an unsigned JWT naming the audience; every other scope gets the emulator's token.
"""

from __future__ import annotations

import base64
import json
import os
import time
from typing import Any

import pytest
from azure.ai.ml import MLClient
from azure.core.credentials import AccessToken

import amlops_testbed as testbed
from amlops_emulator.credentials import EMULATOR_TOKEN
from amlops_emulator.seed import DEFAULT_RESOURCE_GROUP, DEFAULT_SUBSCRIPTION, DEFAULT_WORKSPACE
from tests.support.processes import EmulatorProcess

AML_RESOURCE_ID = "https://ml.azure.com/"
CURRENT_CLOUD = "AZUREML_CURRENT_CLOUD"
AML_SCOPE = AML_RESOURCE_ID.rstrip("/") + "/.default"


def _segment(claims: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()


def aml_token(expires_on: int) -> str:
    """An unsigned JWT for the Azure ML audience: what azure-ai-ml checks before submitting a pipeline."""
    audience = AML_RESOURCE_ID.rstrip("/")
    return f"{_segment({'alg': 'none', 'typ': 'JWT'})}.{_segment({'aud': audience, 'exp': expires_on})}."


class EmulatorTokenCredential:
    """A synchronous ``azure.core.credentials.TokenCredential`` (what MLClient takes) returning the token the
    emulator accepts (and, for the Azure ML scope, :func:`aml_token`)."""

    def __init__(self, token: str = EMULATOR_TOKEN) -> None:
        self._token = token

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        expires_on = int(time.time()) + 3600
        if scopes and scopes[0] == AML_SCOPE:
            return AccessToken(aml_token(expires_on), expires_on)
        return AccessToken(self._token, expires_on)


def cloud_metadata(arm_url: str, storage_endpoint: str) -> dict[str, str]:
    """The ``cloud_metadata`` of an emulator: every ``EndpointURLS`` key, ARM ones at ``arm_url``."""
    base = arm_url.rstrip("/") + "/"
    return {
        "azure_portal": base,
        "resource_manager": base,
        "active_directory": base,
        "aml_resource_id": AML_RESOURCE_ID,
        "storage_endpoint": storage_endpoint,
        "registry_discovery_endpoint": base,
    }


def cloud_name(arm_url: str) -> str:
    # azure-ai-ml keeps clouds in a process-wide table and refuses to overwrite one: one name per emulator URL.
    port = arm_url.rstrip("/").rsplit(":", 1)[1]
    return f"AmlopsEmulator{port}"


def ml_client(
    arm_url: str,
    ca_file: str,
    subscription: str,
    resource_group: str,
    workspace: str,
    *,
    storage_endpoint: str = "core.localhost",
    token: str = EMULATOR_TOKEN,
    polling_interval: float | None = None,
) -> MLClient:
    """An ``MLClient`` on the emulator at ``arm_url`` trusting ``ca_file``, telemetry off. ``storage_endpoint``:
    the emulator's ``storage.storageEndpointSuffix`` (endpoints.json). ``polling_interval``: seconds between
    long-running-operation polls (azure-core's ARM default is 30 when, as for computes, the service sends no
    Retry-After); it reaches every service client through MLClient's keyword arguments."""
    extra: dict[str, Any] = {} if polling_interval is None else {"polling_interval": polling_interval}
    return MLClient(
        EmulatorTokenCredential(token),
        subscription,
        resource_group,
        workspace,
        cloud=cloud_name(arm_url),
        cloud_metadata=cloud_metadata(arm_url, storage_endpoint),
        enable_telemetry=False,
        show_progress=False,
        connection_verify=ca_file,
        **extra,
    )


def storage_env(endpoints: dict[str, Any]) -> dict[str, str]:
    """What the process environment must say for azure-ai-ml's storage clients (``testbed.ml_storage_env``: the
    emulator's loopback proxy and CA). Tests set these with ``monkeypatch`` so nothing outlives the test."""
    return testbed.ml_storage_env(endpoints)


def operator_env(endpoints: dict[str, Any]) -> dict[str, str]:
    """What an operator process needs on top of ``EmulatorRun.operator_env`` for ParallelJobs on the emulator's
    Azure ML: azure-ai-ml's storage clients reach Azurite (:func:`storage_env`) and datastore URLs end in the
    emulator's storage suffix. Start the operator without ``AZUREML_CURRENT_CLOUD`` in this process's environment
    (a test's MLClient writes it, a started process inherits it): azure-ai-ml would look up a cloud the operator
    never registered (``Unknown cloud environment``)."""
    suffix = (endpoints.get("storage") or {}).get("storageEndpointSuffix") or ""
    return {**storage_env(endpoints), "AMLOPS_STORAGE_ENDPOINT_SUFFIX": suffix}


def workspace_client(emulator: EmulatorProcess, monkeypatch: pytest.MonkeyPatch) -> MLClient:
    """An ``MLClient`` on the emulator's default workspace for one test: :func:`storage_env` and the cloud's name,
    which MLClient writes into ``AZUREML_CURRENT_CLOUD``, are set with ``monkeypatch`` (restored after the test).
    Long-running operations are polled every 0.2 s: the emulator's clock runs 60x, a create is done within a
    second."""
    endpoints = emulator.run.endpoints
    for name, value in storage_env(endpoints).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv(CURRENT_CLOUD, cloud_name(emulator.arm_url))
    return ml_client(
        emulator.arm_url,
        emulator.ca_file,
        DEFAULT_SUBSCRIPTION,
        DEFAULT_RESOURCE_GROUP,
        DEFAULT_WORKSPACE,
        storage_endpoint=endpoints["storage"]["storageEndpointSuffix"],
        polling_interval=0.2,
    )


def process_client(run: testbed.EmulatorRun, polling_interval: float | None = None) -> MLClient:
    """An ``MLClient`` on the emulator's default workspace for a process of its own (a bench): the storage
    environment and the cloud's name are set in this process's environment for good (nothing to restore)."""
    endpoints = run.endpoints
    os.environ.update(storage_env(endpoints))
    os.environ[CURRENT_CLOUD] = cloud_name(endpoints["armUrl"])
    return ml_client(
        endpoints["armUrl"],
        endpoints["caFile"],
        DEFAULT_SUBSCRIPTION,
        DEFAULT_RESOURCE_GROUP,
        DEFAULT_WORKSPACE,
        storage_endpoint=endpoints["storage"]["storageEndpointSuffix"],
        polling_interval=polling_interval,
    )
