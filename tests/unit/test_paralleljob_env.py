"""task.environment → the requirements file the node driver installs, without I/O."""

from __future__ import annotations

import pytest

from amlops.external.paralleljob_env import container_pool, container_settings, pool_mismatch, requirements
from amlops.reconcile.errors import TerminalError

pytestmark = pytest.mark.unit

CONDA = """
name: scoring
channels: [conda-forge]
dependencies:
  - python=3.11
  - conda-forge::pip>=24
  - pip:
      - scikit-learn==1.5.2
      - ./wheels/own-1.0-py3-none-any.whl
"""


def test_pip_requirements_and_the_conda_pip_section_are_one_file() -> None:
    text = requirements(["pandas>=2", "  ", "requests"], "env.yml", CONDA)
    assert text == "pandas>=2\nrequests\nscikit-learn==1.5.2\n./wheels/own-1.0-py3-none-any.whl\n"


def test_no_packages_means_no_file() -> None:
    assert requirements([]) is None
    assert requirements([], "env.yml", "dependencies:\n  - python=3.12\n  - pip\n") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, "is not in task.code"),
        ("dependencies: [numpy=2.1, {pip: [x]}]", "conda packages ['numpy=2.1']"),
        ("dependencies: [[nested]]", "unknown dependency entry"),
        ("- a list, not a mapping", "has no dependencies list"),
        ("dependencies: [a\n  b: [", "is not YAML"),
    ],
)
def test_what_cannot_be_installed_is_refused_with_the_reason(text: str | None, expected: str) -> None:
    with pytest.raises(TerminalError) as caught:
        requirements([], "env.yml", text)
    assert caught.value.reason == "InvalidSpec"
    assert expected in caught.value.message


def test_an_image_makes_container_tasks_and_a_container_enabled_pool() -> None:
    assert container_settings(None) is None
    assert container_settings("contoso.azurecr.io/scoring:1") == {
        "imageName": "contoso.azurecr.io/scoring:1",
        "workingDirectory": "taskWorkingDirectory",
    }
    plain = {"id": "pj-1", "vmSize": "STANDARD_D2S_V3", "virtualMachineConfiguration": {"nodeAgentSKUId": "x"}}
    pool = container_pool(plain, "contoso.azurecr.io/scoring:1")
    machine = pool["virtualMachineConfiguration"]
    assert machine["containerConfiguration"] == {
        "type": "dockerCompatible",
        "containerImageNames": ["contoso.azurecr.io/scoring:1"],
    }
    assert machine["nodeAgentSKUId"] == "batch.node.ubuntu 22.04"
    assert machine["imageReference"]["offer"] == "ubuntu-hpc"
    assert pool["id"] == "pj-1"
    assert "containerConfiguration" not in plain["virtualMachineConfiguration"], "the input is not changed"


@pytest.mark.parametrize(
    ("containers", "image", "expected"),
    [
        (False, None, None),
        (True, "scoring:1", None),
        (False, "scoring:1", "has no containerConfiguration"),
        (True, None, "set task.environment.image"),
    ],
)
def test_a_given_pool_must_match_the_kind_of_tasks(containers: bool, image: str | None, expected: str | None) -> None:
    machine = {"containerConfiguration": {"type": "dockerCompatible"}} if containers else {}
    why = pool_mismatch({"id": "scoring", "virtualMachineConfiguration": machine}, image)
    assert (why is None) if expected is None else (why is not None and expected in why)
