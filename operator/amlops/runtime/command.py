"""The Batch task command line that runs ``driver.py``, and where its files land in the task directory.

Kept beside the driver so the two halves of its command-line contract change together. Standard library only.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

DRIVER_FILE = "driver.py"
MANIFEST_FILE = "minibatch.json"
REQUIREMENTS_FILE = "requirements.txt"
MINI_BATCH_VARIABLE = "AMLOPS_MINI_BATCH"  # the manifest inside the task, when it is small enough
CODE_DIR = "code"
DRIVER_SOURCE = Path(__file__).with_name(DRIVER_FILE)


def driver_command_line(
    *,
    mini_batch: str,
    inputs: str,
    results: str,
    entry_script: str,
    code_dir: str = CODE_DIR,
    timeout: int = 60,
    logging_level: str = "INFO",
    append_row: bool = False,
    program_arguments: str | Sequence[str] | None = None,
    requirements: str | None = None,
    python: Sequence[str] = ("python3",),
) -> str:
    """``python3 driver.py ...`` quoted for ``/bin/sh -c`` (how Batch runs a Linux task's command line).

    ``mini_batch`` is ``env:NAME`` when the manifest travels in the task's environment, its SAS URL, or when it
    is a resource file, its path (``MANIFEST_FILE``).
    ``program_arguments`` as a string is split like a shell would (``task.program_arguments``).
    ``requirements`` is the local path of ``task.environment``'s pip requirements file. ``python`` is
    the interpreter's argv, e.g. ``("python3", "-S")`` to keep site-packages out of the driver's process.
    """
    extra = shlex.split(program_arguments) if isinstance(program_arguments, str) else list(program_arguments or ())
    argv = [
        *python,
        DRIVER_FILE,
        *("--mini-batch", mini_batch),
        *("--inputs", inputs),
        *("--code-dir", code_dir),
        *("--entry-script", entry_script),
        *("--results", results),
        *("--timeout", str(timeout)),
        *("--logging-level", logging_level),
        *(["--append-row"] if append_row else []),
        *(["--requirements", requirements] if requirements else []),
        "--",
        *extra,
    ]
    return shlex.join(argv)


def code_dir_for_prefix(blob_prefix: str, file_path: str = CODE_DIR) -> str:
    """Where a ``storageContainerUrl`` resource file with ``blobPrefix`` puts the code: Batch keeps each blob's
    full name under ``filePath``, so the prefix reappears in the local path."""
    return f"{file_path}/{blob_prefix.strip('/')}" if blob_prefix.strip("/") else file_path


def driver_source() -> bytes:
    """The driver's bytes, to upload once per job as the ``driver.py`` resource file."""
    return DRIVER_SOURCE.read_bytes()
