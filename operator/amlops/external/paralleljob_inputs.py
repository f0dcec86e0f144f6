"""ParallelJob inputs, pure: which blobs an ``mltable`` input's MLTable file names, the script's view of every
input (the program arguments' ``${{inputs.x}}``), and the inputs other than ``input_data`` that each node gets.

Azure ML gives a parallel job's script every input, not only ``input_data`` ("How to use parallel job in
pipeline": inputs reach the script through ``program_arguments``, e.g. the seed's ``--model
${{inputs.score_model}}``), a data input as its path on the node and a literal as its value. On Batch, the inputs
other than ``input_data`` are resource files of every task (one read-only SAS URL per blob, downloaded before
the task starts, so before ``init()``); their listing is recorded beside the plan, so every task of a job gets
the same files.

An ``mltable`` input's table is what its ``MLTable`` file's ``paths`` name (MLTable docs, "Working with tables in
Azure Machine Learning": ``file``, ``folder``, ``pattern``, relative to the MLTable file's folder), as the
emulator's Azure ML parallel runtime reads it; a folder without an ``MLTable`` file keeps amlops' earlier
reading, every CSV / JSON Lines file of the folder.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from amlops.api.paralleljob import DATA_TYPES, ParallelJobSpec
from amlops.external.paralleljob_env import load_yaml
from amlops.reconcile.errors import TerminalError
from amlops.runtime.driver import REFERENCE
from amlops.status import REASON_INVALID_SPEC

MLTABLE_FILE = "MLTable"
# An MLTable file is a few lines; the operator reads at most this much of one.
MAX_MLTABLE_BYTES = 64 << 10
# Files of the inputs other than input_data, all together: each is a resource file of every task (one SAS URL
# each in every task body, like the code folder's files).
JOB_INPUT_FILES_LIMIT = 100
REASON_INVALID_MLTABLE = "InvalidMLTable"
REASON_JOB_INPUT_TOO_LARGE = "JobInputTooLarge"
REASON_INPUT_NOT_FOUND = "InputNotFound"
_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def data_inputs(spec: ParallelJobSpec) -> dict[str, str]:
    """Input name → type, for the data inputs (those with a uri)."""
    return {name: i.type for name, i in spec.inputs.items() if i.type in DATA_TYPES}


def job_inputs(spec: ParallelJobSpec, input_data: str) -> dict[str, str]:
    """The data inputs every task downloads whole: all but ``input_data``."""
    return {name: kind for name, kind in data_inputs(spec).items() if name != input_data}


def literals(spec: ParallelJobSpec) -> dict[str, str]:
    """``inputs.<name>`` → value, for the literal inputs."""
    return {f"inputs.{name}": i.value for name, i in spec.inputs.items() if i.value is not None}


def check_references(spec: ParallelJobSpec) -> None:
    """Every ``${{inputs.x}}`` / ``${{outputs.x}}`` in the program arguments names a declared input or output
    (Azure ML refuses an unknown one when the job is submitted); ``${{outputs.x}}`` is refused on Batch: the
    script's output there is run()'s rows (appendRowTo), there is no per-blob token for files it would write."""
    for match in REFERENCE.finditer(spec.task.program_arguments or ""):
        kind, _, name = match.group(1).partition(".")
        declared = spec.inputs if kind == "inputs" else spec.outputs
        if name not in declared:
            raise TerminalError(
                REASON_INVALID_SPEC, f"task.programArguments names {match.group(0)}, which is not in spec.{kind}"
            )
        if kind == "outputs":
            raise TerminalError(
                REASON_INVALID_SPEC,
                f"task.programArguments passes {match.group(0)}: on a BatchCompute a mini-batch's output is what "
                "run() returns (task.appendRowTo); files a script writes to an output folder are not collected",
            )


def mltable_paths(text: str) -> list[dict[str, str]]:
    """The ``paths`` entries of an MLTable file, each ``{"file"|"folder"|"pattern": <relative path>}``."""
    if len(text.encode()) > MAX_MLTABLE_BYTES:
        raise TerminalError(REASON_INVALID_MLTABLE, f"the MLTable file is larger than {MAX_MLTABLE_BYTES} bytes")
    aliases = TerminalError(REASON_INVALID_MLTABLE, "the MLTable file uses YAML aliases, which amlops does not expand")
    doc: Any = load_yaml(text, aliases=aliases, what="the MLTable file")
    entries = doc.get("paths") if isinstance(doc, dict) else None
    if not isinstance(entries, list) or not entries:
        raise TerminalError(REASON_INVALID_MLTABLE, "the MLTable file has no paths list")
    paths = []
    for entry in entries:
        kinds = [k for k in ("file", "folder", "pattern") if isinstance(entry, dict) and k in entry]
        if len(kinds) != 1 or not isinstance(entry[kinds[0]], str):
            raise TerminalError(
                REASON_INVALID_MLTABLE, f"the MLTable path {entry!r} is not one of file, folder, pattern"
            )
        value = entry[kinds[0]]
        if _URL_SCHEME.match(value) or value.startswith("/") or ".." in value.split("/"):
            raise TerminalError(
                REASON_INVALID_MLTABLE,
                f"the MLTable path {value!r} is not relative to the MLTable file's folder (the only form amlops reads)",
            )
        paths.append({kinds[0]: _relative(value)})
    return paths


def in_table(name: str, paths: Iterable[Mapping[str, str]]) -> bool:
    """Whether blob ``name`` (relative to the MLTable file's folder) is data of the table ``paths`` describe."""
    for entry in paths:
        if "file" in entry and name == entry["file"]:
            return True
        if "folder" in entry and (entry["folder"] in ("", ".") or name.startswith(entry["folder"].rstrip("/") + "/")):
            return True
        if "pattern" in entry and _glob(entry["pattern"]).match(name):
            return True
    return False


def _glob(pattern: str) -> re.Pattern[str]:
    """A glob as the MLTable (and ``pathlib``) reads it: ``*`` and ``?`` stay within one folder, ``**`` does not."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] in "*?":
            out, i = out + ("[^/]*" if pattern[i] == "*" else "[^/]"), i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def _relative(value: str) -> str:
    while value.startswith("./"):
        value = value[2:]
    return value
