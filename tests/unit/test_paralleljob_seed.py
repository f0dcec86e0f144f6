"""ParallelJob means what the seed's ``parallel_run_function`` means (issue 18 point 2): defaults, reuse, the
script's inputs and arguments. Pure parts only; the driver's side is in tests/emulator/paralleljob/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from amlops.api.paralleljob import JobInput, ParallelJobSpec
from amlops.external.paralleljob import same_outcome_settings
from amlops.external.paralleljob_inputs import check_references, in_table, mltable_paths
from amlops.reconcile.errors import TerminalError
from amlops.runtime.command import driver_command_line, input_paths
from amlops.runtime.driver import parse_paths, render_arguments

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


# ----------------------------------------------------------------------------------------------- inputs


@pytest.mark.parametrize(
    ("arguments", "values", "expected", "reason"),
    [
        (["--model", "${{inputs.m}}"], {"inputs.m": "/wd/job-inputs/m"}, ["--model", "/wd/job-inputs/m"], "the seed's"),
        (["--m=${{inputs.m}}/x"], {"inputs.m": "/p"}, ["--m=/p/x"], "inside an argument"),
        (["${{ inputs.m }}"], {"inputs.m": "/p"}, ["/p"], "spaces inside the braces, as Azure ML reads them"),
        (["${{inputs.n}}"], {"inputs.n": "a b"}, ["a b"], "a value with spaces stays one argument"),
        (["${{inputs.other}}"], {"inputs.m": "/p"}, ["${{inputs.other}}"], "not given: left for the next pass"),
        (["${{inputs.m}}${{inputs.m}}"], {"inputs.m": "x"}, ["xx"], "every occurrence"),
    ],
)
def test_render_arguments(arguments: list[str], values: dict[str, str], expected: list[str], reason: str) -> None:
    assert render_arguments(arguments, values) == expected, reason


def test_paths_are_absolute_and_stay_in_the_task_directory(tmp_path: Path) -> None:
    assert parse_paths(["inputs.m=job-inputs/m"], tmp_path) == {"inputs.m": str(tmp_path / "job-inputs" / "m")}
    with pytest.raises(ValueError, match="leaves"):
        parse_paths(["inputs.m=../../etc"], tmp_path)
    with pytest.raises(ValueError, match="is not"):
        parse_paths(["inputs.m/x=job-inputs/m"], tmp_path)


def test_command_line_renders_literals_and_names_paths() -> None:
    line = driver_command_line(
        mini_batch="env:X",
        entry_script="s.py",
        program_arguments="--model ${{ inputs.m }} --n ${{inputs.n}}",
        literals={"inputs.n": "5"},
        paths={"inputs.m": "job-inputs/m"},
    )
    assert line.endswith("--path inputs.m=job-inputs/m -- --model '${{inputs.m}}' --n 5"), line


def test_input_paths() -> None:
    kinds = {"data": "mltable", "model": "uri_folder", "table": "mltable", "one": "uri_file"}
    assert input_paths("data", kinds, {"one": ["w.bin"]}) == {
        "inputs.data": "inputs",  # where the driver downloads a file mini-batch
        "inputs.model": "job-inputs/model",
        "inputs.table": "job-inputs/table",  # the MLTable folder, as Azure ML mounts it
        "inputs.one": "job-inputs/one/w.bin",  # the file itself
    }


@pytest.mark.parametrize(
    ("arguments", "reason", "why"),
    [
        ("--model ${{inputs.model}} --n ${{inputs.n}}", None, "declared inputs"),
        ("--x ${{inputs.nope}}", "InvalidSpec", "an input that is not declared (Azure ML refuses it at submission)"),
        ("--out ${{outputs.scores}}", "InvalidSpec", "an output folder: nothing on Batch collects its files"),
        ("--out ${{outputs.nope}}", "InvalidSpec", "an undeclared output"),
    ],
)
def test_check_references(arguments: str, reason: str | None, why: str) -> None:
    inputs = {"data": {"uri": f"{AZURITE}/a/in"}, "model": {"uri": f"{AZURITE}/a/m"},
              "n": {"type": "integer", "value": "3"}}  # fmt: skip
    spec = ParallelJobSpec.model_validate(
        body(inputs=inputs, task={"code": f"{AZURITE}/a/src", "entryScript": "s.py", "programArguments": arguments})
    )
    if reason is None:
        check_references(spec)
        return
    with pytest.raises(TerminalError) as caught:
        check_references(spec)
    assert caught.value.reason == reason, why


@pytest.mark.parametrize(
    ("value", "valid", "reason"),
    [
        ({"uri": "u"}, True, "a data input, uri_folder by default"),
        ({"type": "integer", "value": "-3"}, True, "a literal"),
        ({"type": "boolean", "value": "True"}, True, "a boolean as Python writes it"),
        ({"type": "number", "value": "1e-3"}, True, "a number"),
        ({"value": "3"}, False, "a value without a literal type"),
        ({"type": "integer", "value": "3.5"}, False, "not an integer"),
        ({"type": "string"}, False, "a literal without value"),
        ({"type": "uri_file", "uri": "u", "value": "v"}, False, "both"),
    ],
)
def test_job_input_is_data_or_literal(value: dict[str, Any], valid: bool, reason: str) -> None:
    """The model refuses what the CEL rules on spec.inputs refuse (the e2e schema tests check the apiserver)."""
    if valid:
        JobInput.model_validate(value)
        return
    with pytest.raises(ValidationError, match=r"data input sets uri|not a literal of type"):
        JobInput.model_validate(value)


@pytest.mark.parametrize(
    ("text", "names", "reason"),
    [
        ("paths:\n  - file: ./data.csv\n", {"data.csv"}, "a file"),
        ("paths:\n  - folder: ./part\n", {"part/1.csv", "part/sub/2.csv"}, "a folder, recursively"),
        ("paths:\n  - pattern: ./*.csv\n", {"data.csv", "extra.csv"}, "a pattern: * stays in its folder"),
        ("paths:\n  - pattern: ./**/*.csv\n", {"data.csv", "extra.csv", "part/1.csv", "part/sub/2.csv"}, "**"),
        ("paths:\n  - folder: .\n", {"data.csv", "extra.csv", "part/1.csv", "part/sub/2.csv", "MLTable"}, "all"),
    ],
)
def test_mltable_paths_name_the_tables_files(text: str, names: set[str], reason: str) -> None:
    """MLTable ``paths`` (Azure ML, "Working with tables": file, folder, pattern relative to the MLTable file)."""
    listing = ["MLTable", "data.csv", "extra.csv", "part/1.csv", "part/sub/2.csv"]
    paths = mltable_paths(text)
    assert {n for n in listing if in_table(n, paths)} == names, reason


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("paths: []\n", "no paths"),
        ("paths:\n  - file: https://elsewhere/x.csv\n", "a URL: not relative to the table's folder"),
        ("paths:\n  - file: ../other/x.csv\n", "outside the table's folder"),
        ("paths:\n  - files: x.csv\n", "none of file, folder, pattern"),
        ("a: &a [x]\npaths: *a\n", "aliases"),
        ("paths: [\n", "not YAML"),
    ],
)
def test_an_mltable_amlops_cannot_read_is_refused(text: str, reason: str) -> None:
    with pytest.raises(TerminalError):
        mltable_paths(text)
