"""The operator image's allocator settings (Dockerfile ``ENV``) and the test bed's (``IMAGE_ALLOCATOR_ENV``) are
the same, so that tests and benches run the operator as the image does (tests/image builds and runs the image)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

import amlops_testbed as testbed

pytestmark = pytest.mark.unit
DOCKERFILE = Path(__file__).resolve().parents[2] / "Dockerfile"


def final_stage_env() -> dict[str, str]:
    """``ENV`` of the Dockerfile's last stage, continuation lines joined and comments dropped."""
    lines = [line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")]
    instructions = " ".join(lines).replace("\\ ", " ").split(" FROM ")
    env: dict[str, str] = {}
    words = shlex.split(instructions[-1])
    for i, word in enumerate(words):
        if word == "ENV":
            for pair in words[i + 1 :]:
                if "=" not in pair:
                    break
                key, value = pair.split("=", 1)
                env[key] = value
    return env


def test_the_image_and_the_test_bed_run_the_operator_with_one_allocator() -> None:
    env = final_stage_env()
    assert "PYTHONSAFEPATH" in env, env  # the parse found the final stage's ENV
    assert {key: env.get(key) for key in testbed.IMAGE_ALLOCATOR_ENV} == testbed.IMAGE_ALLOCATOR_ENV
    assert "libjemalloc2" in DOCKERFILE.read_text(), "the image installs the library it preloads"
