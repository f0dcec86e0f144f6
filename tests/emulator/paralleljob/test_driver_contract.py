"""The driver's pure parts: its command line (built by the operator, parsed on the node) and row formatting."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from amlops.runtime import driver
from amlops.runtime.command import (
    CODE_DIR,
    MANIFEST_FILE,
    ROWS_URL_VARIABLE,
    SUMMARY_URL_VARIABLE,
    driver_command_line,
    driver_environment,
    with_input_urls,
)

pytestmark = pytest.mark.unit


def test_the_command_line_the_operator_builds_is_the_one_the_driver_parses() -> None:
    line = driver_command_line(
        mini_batch=MANIFEST_FILE,
        entry_script="score.py",
        code_dir=CODE_DIR,
        timeout=90,
        logging_level="DEBUG",
        append_row=True,
        program_arguments="--model 'my model' --top-k 3",
    )
    argv = shlex.split(line)  # what /bin/sh -c hands the interpreter
    args = driver.parse_args(argv[2:])

    assert argv[:2] == ["python3", "driver.py"]
    assert (args.mini_batch, args.summary, args.rows) == (
        MANIFEST_FILE,
        f"env:{SUMMARY_URL_VARIABLE}",
        f"env:{ROWS_URL_VARIABLE}",
    )
    assert str(args.code_dir) == "code"
    assert (args.entry_script, args.timeout, args.logging_level) == ("score.py", 90, "DEBUG")
    assert args.program_arguments == ["--model", "my model", "--top-k", "3"]
    assert "sig=" not in line, "no SAS URL on a command line: every process on the node sees it"
    assert "http" not in line


def test_without_program_arguments_or_append_row() -> None:
    line = driver_command_line(mini_batch="m.json", entry_script="s.py")
    args = driver.parse_args(shlex.split(line)[2:])

    assert args.program_arguments == []
    assert args.rows is None


def test_the_environment_the_operator_sets_is_where_the_driver_finds_the_result_urls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    line = driver_command_line(mini_batch="m.json", entry_script="s.py", append_row=True)
    args = driver.parse_args(shlex.split(line)[2:])
    for setting in driver_environment("https://a/c/0.summary.json?sig=s", "https://a/c/0.txt?sig=r"):
        monkeypatch.setenv(setting["name"], setting["value"])

    assert driver.location_text(args.summary) == "https://a/c/0.summary.json?sig=s"
    assert driver.location_text(args.rows) == "https://a/c/0.txt?sig=r"
    assert [s["name"] for s in driver_environment("u")] == [SUMMARY_URL_VARIABLE]


def test_inputs_are_fetched_only_by_the_urls_the_manifest_carries() -> None:
    manifest = with_input_urls({"index": 0, "kind": "files", "files": ["a.txt"]}, {"a.txt": "https://a/c/a.txt?s"})

    assert driver.input_url(manifest, "a.txt") == "https://a/c/a.txt?s"
    with pytest.raises(FileNotFoundError, match=r"b\.txt"):
        driver.input_url(manifest, "b.txt")


@dataclass(frozen=True)
class ExpiryCase:
    reason: str
    url: str
    expired: bool


NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
EXPIRY_CASES = [
    ExpiryCase("a token that ends later is usable", "https://a/c/b?se=2026-11-29T13%3A00%3A00Z&sig=x", False),
    ExpiryCase("a token that ended is not", "https://a/c/b?se=2026-11-29T11%3A59%3A59Z&sig=x", True),
    ExpiryCase("its end is already past at that second", "https://a/c/b?se=2026-11-29T12%3A00%3A00Z&sig=x", True),
    ExpiryCase("no se: nothing to say", "https://a/c/b?sig=x", False),
    ExpiryCase("an se that is no time: nothing to say", "https://a/c/b?se=soon&sig=x", False),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.reason) for c in EXPIRY_CASES])
def test_an_expired_token_is_said_clearly(case: ExpiryCase) -> None:
    why = driver.expired(case.url, NOW)

    assert (why is not None) == case.expired, case.reason
    assert why is None or "waited in the queue longer than the job's token lifetime" in why


def test_the_pip_environment_is_keyed_by_job() -> None:
    requirements = b"pandas==2.2.3\n"

    assert driver.environment_key("pj-a", requirements) != driver.environment_key("pj-b", requirements)
    assert driver.environment_key("pj-a", requirements) != driver.environment_key("pj-a", b"numpy\n")
    assert driver.environment_key("pj-a", requirements) == driver.environment_key("pj-a", requirements)


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
