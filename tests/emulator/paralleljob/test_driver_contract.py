"""The driver's pure parts: its command line (built by the operator, parsed on the node) and row formatting."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from amlops.runtime import driver
from amlops.runtime.command import MANIFEST_FILE, code_dir_for_prefix, driver_command_line

pytestmark = pytest.mark.unit


def test_the_command_line_the_operator_builds_is_the_one_the_driver_parses() -> None:
    inputs = "http://127.0.0.1:1/acct/data/in/?sv=2025&sig=a%2Bb&sp=rl"
    results = "https://acct.blob.core.windows.net/out/job/_amlops/j/results/?sig=x&sp=rwc"

    line = driver_command_line(
        mini_batch=MANIFEST_FILE,
        inputs=inputs,
        results=results,
        entry_script="score.py",
        code_dir=code_dir_for_prefix("jobs/j/src/"),
        timeout=90,
        logging_level="DEBUG",
        append_row=True,
        program_arguments="--model 'my model' --top-k 3",
    )
    argv = shlex.split(line)  # what /bin/sh -c hands the interpreter
    args = driver.parse_args(argv[2:])

    assert argv[:2] == ["python3", "driver.py"]
    assert (args.mini_batch, args.inputs, args.results) == (MANIFEST_FILE, inputs, results)
    assert str(args.code_dir) == "code/jobs/j/src"
    assert (args.entry_script, args.timeout, args.logging_level, args.append_row) == ("score.py", 90, "DEBUG", True)
    assert args.program_arguments == ["--model", "my model", "--top-k", "3"]


def test_without_program_arguments_or_append_row() -> None:
    line = driver_command_line(mini_batch="m.json", inputs="i", results="r", entry_script="s.py")
    args = driver.parse_args(shlex.split(line)[2:])

    assert args.program_arguments == []
    assert not args.append_row


def test_blob_urls_keep_the_sas_token_and_quote_names() -> None:
    url = driver.blob_url("http://h:1/acct/c/in?sv=1&sig=abc", "sub dir/a#1.txt")
    assert url == "http://h:1/acct/c/in/sub%20dir/a%231.txt?sv=1&sig=abc"


def test_input_names_cannot_leave_the_inputs_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="leaves"):
        driver.local_input_path(tmp_path, "../../etc/passwd")


class FakeFrame:
    """What the driver uses of a pandas DataFrame (pandas is not installed here)."""

    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self.rows = rows

    def itertuples(self, index: bool, name: None) -> list[tuple[Any, ...]]:
        assert (index, name) == (False, None)
        return self.rows


@dataclass(frozen=True)
class RowCase:
    reason: str
    result: Any
    lines: list[str]


ROW_CASES = [
    RowCase("strings are written as is", ["a: 1", "b: 2"], ["a: 1", "b: 2"]),
    RowCase("list and tuple rows are space-joined", [[1, "x"], (2.5, None)], ["1 x", "2.5 None"]),
    RowCase("dict rows write their values", [{"id": 7, "p": 0.5}], ["7 0.5"]),
    RowCase("other values are str()", [42, b"raw"], ["42", "raw"]),
    RowCase("a DataFrame's rows without header or index", FakeFrame([(1, "a"), (2, "b")]), ["1 a", "2 b"]),
    RowCase("None is an empty result", None, []),
    RowCase("a lone string is one row", "single", ["single"]),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.reason) for c in ROW_CASES])
def test_result_rows(case: RowCase) -> None:
    assert driver.result_rows(case.result) == case.lines, case.reason


def test_parse_rows_of_csv_and_json_lines() -> None:
    assert driver.parse_rows("csv", "a,b\n", "1,x\n2,y\n") == [{"a": "1", "b": "x"}, {"a": "2", "b": "y"}]
    assert driver.parse_rows("jsonl", "", '{"a": 1}\n\n[2]\n') == [{"a": 1}, [2]]
