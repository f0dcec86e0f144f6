"""What a command job's REST body becomes on the nodes (``ml/jobs.py``, ``ml/execution.py``): pure.

Evidence: the swagger's ``CommandJobLimits.timeout`` is an ISO 8601 duration (``examples/Job/CommandJob/get.json``
of azure-rest-api-specs ``stable/2024-10-01``: ``"timeout": "PT5M"``); its ``LiteralJobInput`` (``jobInputType:
literal``, ``value``); Azure ML's common runtime mounts an output under ``/mnt/azureml/cr/j/{run}/cap/
data-capability/wd/{name}`` beside the working directory ``.../exe/wd``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from amlops_emulator.arm.errors import ArmError
from amlops_emulator.ml.execution import output_dir, render_outputs
from amlops_emulator.ml.jobs import default_output_path, parse_duration, render_inputs

pytestmark = pytest.mark.emulator


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("PT5M", 300.0),  # the swagger example's
        ("PT10S", 10.0),  # what azure-ai-ml sends for limits.timeout=10
        ("PT1H30M", 5400.0),  # hours and minutes together
        ("P1D", 86400.0),  # days, no time part
        ("PT0.5S", 0.5),  # fractions
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "P", "PT", "5M", "PT5X", "P1DT"])
def test_malformed_durations_are_refused(text: str) -> None:
    with pytest.raises(ArmError) as raised:
        parse_duration(text)
    assert (raised.value.status, raised.value.code) == (400, "UserError")


@pytest.mark.parametrize(
    ("command", "inputs", "expected"),
    [
        (
            "python a.py --lr ${{inputs.lr}}",
            {"lr": {"jobInputType": "literal", "value": "0.1"}},
            "python a.py --lr 0.1",
        ),
        ("echo ${{inputs.a}} ${{inputs.a}}", {"a": {"jobInputType": "literal", "value": "x"}}, "echo x x"),  # each use
        ("python a.py", {}, "python a.py"),  # nothing to replace
    ],
)
def test_literal_inputs_are_replaced(command: str, inputs: dict[str, Any], expected: str) -> None:
    assert render_inputs(command, inputs) == expected


def test_data_inputs_are_refused_by_name() -> None:
    """The emulator does not bring data inputs to the nodes: a clear 400 naming the input, not a run that
    fails later on a path that does not exist."""
    with pytest.raises(ArmError) as raised:
        render_inputs("python a.py ${{inputs.data}}", {"data": {"jobInputType": "uri_folder", "uri": "azureml://x"}})
    assert (raised.value.status, raised.value.code) == (400, "UserError")
    assert "'data'" in raised.value.message


def test_outputs_live_beside_the_working_directory() -> None:
    workdir = Path("/state/aml/nodes/n0/cr/j/run1/exe/wd")
    assert output_dir(workdir, "model") == Path("/state/aml/nodes/n0/cr/j/run1/cap/data-capability/wd/model")


def test_output_placeholders_are_replaced_and_others_kept() -> None:
    command = "python t.py --out ${{outputs.model}} --in ${{inputs.x}} --m2 ${{outputs.model}}"
    assert render_outputs(command, {"model": "/o/model"}) == (
        "python t.py --out /o/model --in ${{inputs.x}} --m2 /o/model"
    )


def test_default_output_path() -> None:
    assert default_output_path("job1", "model") == "azureml/job1/model"
