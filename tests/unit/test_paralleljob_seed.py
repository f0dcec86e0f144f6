"""ParallelJob means what the seed's ``parallel_run_function`` means (issue 18 point 2): defaults, reuse, the
script's inputs and arguments. Pure parts only; the driver's side is in tests/emulator/paralleljob/."""

from __future__ import annotations

from typing import Any

import pytest

from amlops.api.paralleljob import ParallelJobSpec
from amlops.external.paralleljob import same_outcome_settings

pytestmark = pytest.mark.unit

AZURITE = "http://127.0.0.1:10000/devstoreaccount1"


def body(**fields: Any) -> dict[str, Any]:
    return {
        "compute": {"name": "batch"},
        "inputs": {"data": {"uri": f"{AZURITE}/team-a/inputs"}},
        "outputs": {"scores": {"uri": f"{AZURITE}/team-a/out"}},
        "inputData": "${{inputs.data}}",
        "task": {"code": f"{AZURITE}/team-a/src", "entryScript": "score.py"},
        **fields,
    }


def test_defaults_are_the_seeds() -> None:
    """azure-ai-ml 1.35 parallel_run_function: is_deterministic=True, logging_level INFO, instance_count 1,
    mini_batch_size absent (10 files / 1MB, resolved by input type in planning); retry_settings.max_retries is
    not sent by azure-ai-ml when unset (RetrySettings(max_retries=None)), so Azure ML's documented default, 2
    retries, applies ("How to use parallel job in pipeline"); the emulator's runtime uses the same."""
    spec = ParallelJobSpec.model_validate(body())
    assert spec.is_deterministic is True
    assert spec.logging_level == "INFO"
    assert spec.instance_count == 1
    assert spec.mini_batch_size is None
    assert spec.retry_settings.max_retries == 2
    assert spec.retry_settings.timeout == 60


@pytest.mark.parametrize(
    ("other", "same", "reason"),
    [
        (body(), True, "identical"),
        (body(errorThreshold=-1, retrySettings={"maxRetries": 2, "timeout": 60}), True, "defaults spelled out"),
        (body(displayName="x", tags={"a": "b"}), True, "metadata does not decide the outcome"),
        (body(errorThreshold=0), False, "a stricter errorThreshold may fail where the other completed"),
        (body(miniBatchErrorThreshold=3), False, "another miniBatchErrorThreshold"),
        (body(retrySettings={"maxRetries": 0}), False, "fewer retries may fail where the other completed"),
        ({"compute": "not an object"}, False, "not a spec this operator runs: never reused"),
    ],
)
def test_reuse_needs_the_same_outcome_settings(other: dict[str, Any], same: bool, reason: str) -> None:
    assert same_outcome_settings(ParallelJobSpec.model_validate(body()), other) == same, reason
