"""The Azure ML jobs adapter's pure parts: azure-ai-ml's refusals → the engine's errors, the cloud an
``MLClient`` is pointed at, and the sync-over-async credential bridge."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from azure.ai.ml.exceptions import MlException, ValidationException

from amlops.azure.credentials import StaticTokenCredential
from amlops.azure.ml_jobs import LoopCredential, cloud_options, refusal
from amlops.settings import Settings

pytestmark = pytest.mark.unit

WRAPPED = json.dumps(
    {
        "result": "Failed",
        "errors": [
            {
                "message": "(ResourceNotFound) The Resource 'computes/ws/none' was not found.\n"
                "Code: ResourceNotFound\nMessage: The Resource 'computes/ws/none' was not found.",
                "path": "compute",
            }
        ],
    }
)


def validation(message: str) -> ValidationException:
    return ValidationException(message=message, no_personal_data_message=message)


@pytest.mark.parametrize(
    ("error", "reason", "message", "why"),
    [
        (
            validation(WRAPPED),
            "ResourceNotFound",
            "(ResourceNotFound) The Resource 'computes/ws/none' was not found.",
            "azure-ai-ml resolved the compute first and wraps Azure's answer: Azure's code is the reason",
        ),
        (validation("mini_batch_size must follow"), "InvalidSpec", "mini_batch_size must follow", "its validation"),
        (
            MlException(message="no token", no_personal_data_message="no token"),
            "UserError",
            "no token",
            "any other refusal of azure-ai-ml's",
        ),
        (
            validation(WRAPPED.replace("ResourceNotFound", "QuotaExceeded")),
            "QuotaExceeded",
            "(QuotaExceeded) The Resource 'computes/ws/none' was not found.",
            "a wrapped code goes through the funnel's stable reasons",
        ),
    ],
)
def test_refusal(error: MlException, reason: str, message: str, why: str) -> None:
    refused = refusal(error)
    assert refused.reason == reason, why
    assert refused.message == message, why


@pytest.mark.parametrize(
    ("settings", "expected", "why"),
    [
        (Settings(), {"enable_telemetry": False, "show_progress": False}, "Azure public cloud: azure-ai-ml's own"),
        (
            Settings(arm_endpoint="https://127.0.0.1:8443", ca_bundle=Path("/ca.pem")),
            {
                "enable_telemetry": False,
                "show_progress": False,
                "connection_verify": "/ca.pem",
                "cloud": "Amlops1270018443",
                "cloud_metadata": {
                    "azure_portal": "https://127.0.0.1:8443/",
                    "resource_manager": "https://127.0.0.1:8443/",
                    "active_directory": "https://127.0.0.1:8443/",
                    "aml_resource_id": "https://ml.azure.com/",
                    "storage_endpoint": "core.localhost",
                    "registry_discovery_endpoint": "https://127.0.0.1:8443/",
                },
            },
            "another ARM (the emulator): every endpoint there, the CA trusted, a cloud named after it",
        ),
    ],
)
def test_cloud_options(settings: Settings, expected: dict[str, Any], why: str) -> None:
    assert cloud_options(settings, "core.localhost" if settings.ca_bundle else "core.windows.net") == expected, why


async def test_the_credential_bridge_answers_from_a_worker_thread_and_refuses_on_its_own_loop() -> None:
    bridge = LoopCredential(StaticTokenCredential("t"), asyncio.get_running_loop())
    token = await asyncio.to_thread(bridge.get_token, "https://ml.azure.com/.default")
    assert token.token == "t"
    assert threading.current_thread() is threading.main_thread()
    with pytest.raises(RuntimeError, match="own event loop"):
        bridge.get_token("https://ml.azure.com/.default")
