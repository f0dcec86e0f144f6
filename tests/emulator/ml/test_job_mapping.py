"""What a command job's REST body becomes on the nodes (``ml/jobs.py``, ``ml/execution.py``): pure.

Evidence: the swagger's ``CommandJobLimits.timeout`` is an ISO 8601 duration (``examples/Job/CommandJob/get.json``
of azure-rest-api-specs ``stable/2024-10-01``: ``"timeout": "PT5M"``); Azure ML's common runtime mounts an output
under ``/mnt/azureml/cr/j/{run}/cap/data-capability/wd/{name}`` beside the working directory ``.../exe/wd``. Inputs
(literal and data): test_job_inputs.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from amlops_emulator.arm.errors import ArmError
from amlops_emulator.ml.execution import output_dir, render_outputs
from amlops_emulator.ml.jobs import default_output_path, parse_duration

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
