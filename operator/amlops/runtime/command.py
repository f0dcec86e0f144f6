"""The Batch task command line and environment that run ``driver.py``, and where its files land in the task
directory.

Kept beside the driver so the two halves of its command-line contract change together. Standard library only.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from amlops.runtime.driver import INPUT_URLS, MINI_BATCH_INPUTS, REFERENCE, render_arguments

DRIVER_FILE = "driver.py"
MANIFEST_FILE = "minibatch.json"
REQUIREMENTS_FILE = "requirements.txt"
MINI_BATCH_VARIABLE = "AMLOPS_MINI_BATCH"  # the manifest inside the task, when it is small enough
# The task's result blobs, each a blob SAS URL: <index>.summary.json (read + write: a retry reads the previous
# attempt's) and, with append_row, <index>.txt (write). In the environment, not the command line: a command
# line is visible to every process on the node (ps), a process's environment only to its own user.
SUMMARY_URL_VARIABLE = "AMLOPS_SUMMARY_URL"
ROWS_URL_VARIABLE = "AMLOPS_ROWS_URL"
CODE_DIR = "code"
JOB_INPUTS_DIR = "job-inputs"  # the inputs other than input_data, as resource files: job-inputs/<name>/...
DRIVER_SOURCE = Path(__file__).with_name(DRIVER_FILE)


def driver_command_line(
    *,
    mini_batch: str,
    entry_script: str,
    code_dir: str = CODE_DIR,
    timeout: int = 60,
    logging_level: str = "INFO",
    append_row: bool = False,
    program_arguments: str | Sequence[str] | None = None,
    requirements: str | None = None,
    literals: Mapping[str, str] | None = None,
    paths: Mapping[str, str] | None = None,
    python: Sequence[str] = ("python3",),
) -> str:
    """``python3 driver.py ...`` quoted for ``/bin/sh -c`` (how Batch runs a Linux task's command line).

    ``mini_batch`` is ``env:NAME`` when the manifest travels in the task's environment, or when it is a
    resource file, its path (``MANIFEST_FILE``). No SAS URL goes here: the result blobs' URLs are named by
    environment variable (:func:`driver_environment` sets them), the inputs' travel in the manifest.
    ``append_row`` asks for ``<index>.txt`` (``task.appendRowTo``).
    ``program_arguments`` as a string is split like a shell would (``task.program_arguments``).
    ``requirements`` is the local path of ``task.environment``'s pip requirements file. ``literals`` are literal
    inputs (``inputs.n`` → its value), put in the arguments here; ``paths`` the data inputs' paths relative to
    the task (``inputs.model`` → ``job-inputs/model``), which the driver makes absolute. ``python`` is
    the interpreter's argv, e.g. ``("python3", "-S")`` to keep site-packages out of the driver's process.
    """
    if isinstance(program_arguments, str):
        # ${{ inputs.x }} with spaces is one reference (as Azure ML reads it), not three arguments once split.
        extra = shlex.split(REFERENCE.sub(lambda match: "${{" + match.group(1) + "}}", program_arguments))
    else:
        extra = list(program_arguments or ())
    extra = render_arguments(extra, literals or {})
    argv = [
        *python,
        DRIVER_FILE,
        *("--mini-batch", mini_batch),
        *("--summary", f"env:{SUMMARY_URL_VARIABLE}"),
        *("--code-dir", code_dir),
        *("--entry-script", entry_script),
        *("--timeout", str(timeout)),
        *("--logging-level", logging_level),
        *(["--rows", f"env:{ROWS_URL_VARIABLE}"] if append_row else []),
        *(["--requirements", requirements] if requirements else []),
        *(arg for key, path in sorted((paths or {}).items()) for arg in ("--path", f"{key}={path}")),
        "--",
        *extra,
    ]
    return shlex.join(argv)


def driver_environment(summary_url: str, rows_url: str | None = None) -> list[dict[str, str]]:
    """The task's ``environmentSettings`` the driver reads its result blobs' SAS URLs from."""
    settings = [{"name": SUMMARY_URL_VARIABLE, "value": summary_url}]
    return settings if rows_url is None else [*settings, {"name": ROWS_URL_VARIABLE, "value": rows_url}]


def with_input_urls(manifest: Mapping[str, Any], urls: Mapping[str, str]) -> dict[str, Any]:
    """The manifest document a task carries: the plan's, plus the read SAS URL of each input it names (the
    driver fetches exactly these: ``driver.input_url``)."""
    return {**manifest, INPUT_URLS: dict(urls)}


def input_paths(input_data: str, kinds: Mapping[str, str], files: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """Each data input's path on the node, relative to the task: ``input_data`` is where the mini-batch's files
    are; another ``uri_folder`` / ``mltable`` input its folder of resource files; a ``uri_file`` input the one
    file (``files`` names it). ``kinds``: input name → type, data inputs only."""
    paths = {}
    for name, kind in kinds.items():
        if name == input_data:
            paths[f"inputs.{name}"] = MINI_BATCH_INPUTS
        elif kind == "uri_file" and files.get(name):
            paths[f"inputs.{name}"] = job_input_path(name, files[name][0])
        else:
            paths[f"inputs.{name}"] = f"{JOB_INPUTS_DIR}/{name}"
    return paths


def job_input_path(input_name: str, blob: str) -> str:
    """Where one blob of an input other than input_data lands in the task directory (a resource file)."""
    return f"{JOB_INPUTS_DIR}/{input_name}/{blob.lstrip('/')}"


def code_file_path(name: str) -> str:
    """Where a code folder's file lands in the task directory (an ``httpUrl`` resource file each)."""
    return f"{CODE_DIR}/{name.lstrip('/')}"


def driver_source() -> bytes:
    """The driver's bytes, to upload once per job as the ``driver.py`` resource file."""
    return DRIVER_SOURCE.read_bytes()
