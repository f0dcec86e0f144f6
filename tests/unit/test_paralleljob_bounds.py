"""ParallelJob specs and tenant data that must never crash-loop or block the shared operator: a pure table each."""

from __future__ import annotations

import json
from typing import Any

import pytest

from amlops.api.paralleljob import ParallelJobSpec
from amlops.external import paralleljob_map as m
from amlops.external.paralleljob import validate
from amlops.external.paralleljob_env import MAX_CONDA_FILE_BYTES, requirements
from amlops.external.paralleljob_output import parse_summary
from amlops.reconcile.errors import TerminalError

pytestmark = pytest.mark.unit


def spec(**overrides: Any) -> ParallelJobSpec:
    task = {"code": "https://a/c/code", "entryScript": "score.py", **overrides.pop("task", {})}
    return ParallelJobSpec.model_validate(
        {
            "compute": {"name": "batch"},
            "inputs": {"data": {"uri": "https://a/c/in"}},
            "outputs": {"scores": {"uri": "https://a/c/out"}},
            "inputData": "${{inputs.data}}",
            "task": task,
            **overrides,
        }
    )


@pytest.mark.parametrize(
    ("job", "message", "why"),
    [
        (spec(task={"programArguments": "--name 'unbalanced"}), "balance its quotes", "shlex: no closing quotation"),
        (spec(task={"programArguments": 'a "b'}), "balance its quotes", "an open double quote"),
        (spec(task={"programArguments": "trailing \\"}), "balance its quotes", "a trailing escape"),
        (spec(task={"appendRowTo": "${{outputs.other}}"}), "names no entry of spec.outputs", "appendRowTo"),
    ],
)
def test_specs_refused_before_anything_is_created(job: ParallelJobSpec, message: str, why: str) -> None:
    with pytest.raises(TerminalError) as caught:
        validate(job)
    assert caught.value.reason == "InvalidSpec", why
    assert message in caught.value.message, why


@pytest.mark.parametrize(
    "job",
    [spec(), spec(task={"programArguments": "--a 'b c' \"d\""}), spec(task={"appendRowTo": "${{outputs.scores}}"})],
)
def test_valid_specs_pass(job: ParallelJobSpec) -> None:
    validate(job)


GOOD = {"index": 3, "items": 5, "processed": 4, "failed": 1, "attempt": 2, "error": None}


@pytest.mark.parametrize(
    ("data", "failed", "why"),
    [
        (json.dumps(GOOD).encode(), False, "what the driver writes"),
        (json.dumps({**GOOD, "error": {"type": "ValueError", "message": "x"}}).encode(), False, "a run() failure"),
        (b"{not json", True, "not JSON"),
        (b"[1, 2]", True, "JSON, not an object"),
        (json.dumps({**GOOD, "processed": "many"}).encode(), True, "a count that is not a number"),
        (json.dumps({**GOOD, "index": 4}).encode(), True, "another mini-batch's summary"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "index"}).encode(), True, "no index"),
        (json.dumps({**GOOD, "error": "boom"}).encode(), True, "an error that is not an object"),
        (b"[" * 100_000, True, "nesting deeper than the parser's recursion"),
        (b"\xff\xfe", True, "not text"),
    ],
)
def test_parse_summary(data: bytes, failed: bool, why: str) -> None:
    summary = parse_summary(data, 3)
    assert summary.index == 3, why
    invalid = (summary.error or {}).get("type") == "InvalidSummary"
    assert invalid == failed, why
    if failed:
        assert "3.summary.json is" in str((summary.error or {}).get("message")), why
        assert (summary.processed, summary.failed) == (0, 0), why


@pytest.mark.parametrize(
    ("result", "valid", "succeeded", "why"),
    [
        ("success", True, True, "ran, summary as written"),
        ("success", False, False, "ran, but its summary was overwritten with garbage: failed"),
        ("failure", True, False, "run() raised"),
    ],
)
def test_finished_counts_an_invalid_summary_as_failed(result: str, valid: bool, succeeded: bool, why: str) -> None:
    assert m.finished(m.TaskFact(0, "completed", result), (1, 0), valid).succeeded == succeeded, why


LAUGHS = "a: &a [lol, lol, lol]\nb: &b [*a, *a, *a]\nc: &c [*b, *b, *b]\ndependencies: [{pip: [*c]}]\n"


@pytest.mark.parametrize(
    ("text", "reason", "why"),
    [
        (LAUGHS, "CondaFileHasAliases", "billion laughs: never expanded"),
        ("dependencies:\n  - &p pip\n  - *p\n", "CondaFileHasAliases", "even one alias"),
        ("dependencies:\n" + "  - pip:\n      - x\n" * 1 + "#" * MAX_CONDA_FILE_BYTES, "CondaFileTooLarge",
         "over the size bound"),
        ("[" * 50_000, "InvalidSpec", "nesting too deep: refused, not a crash"),
    ],
)  # fmt: skip
def test_conda_file_bounds(text: str, reason: str, why: str) -> None:
    with pytest.raises(TerminalError) as caught:
        requirements([], "env.yml", text)
    assert caught.value.reason == reason, why
