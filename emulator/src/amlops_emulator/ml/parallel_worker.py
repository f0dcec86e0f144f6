"""One worker process of Azure ML's parallel runtime on an emulated node (see ``ml/parallel.py``).

Standard library only (pandas is used when the node's Python has it), run as ``python parallel_worker.py`` by
the emulator's coordinator; the emulator never imports it. It speaks JSON lines with the coordinator over its
own stdin and a duplicate of its original stdout, and points file descriptors 1 and 2 at the process's
``logs/user/stdout/…`` and ``logs/user/stderr/…`` files, so the entry script's ``print`` and logging land
where Azure ML puts them and can never corrupt the protocol.

Protocol: the first line from the coordinator is the configuration (``entry_script``, ``code_dir``, ``argv``,
``logging_level``, ``stdout``, ``stderr``); the worker loads the entry script with ``sys.argv`` set to the
program arguments, calls ``init()`` once and answers ``{"event": "ready"}`` (or ``init_failed`` with the
traceback, then exits 1). Each later line is a mini-batch (``files``: paths; ``tabular``: byte ranges of rows
and how to read them), answered by ``{"event": "result", "rows": [...], "items", "error", ...}``; ``{"stop":
true}`` calls the optional ``shutdown()`` and exits 0. A ``run()`` that hangs is killed by the coordinator
(the per-call ``retry_settings.timeout``), so nothing here needs a timer.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import IO, Any

TRACEBACK_LINES = 30


def redirect(stdout: str, stderr: str) -> IO[str]:
    """The protocol channel (the original stdout); fds 1 and 2 go to the process's log files from now on."""
    channel = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    for fd, path in ((1, stdout), (2, stderr)):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(target, fd)
        os.close(target)
    sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", buffering=0), encoding="utf-8", line_buffering=True)
    sys.stderr = io.TextIOWrapper(os.fdopen(2, "wb", buffering=0), encoding="utf-8", line_buffering=True)
    return channel


def load(code_dir: str, entry_script: str, argv: list[str]) -> ModuleType:
    """The entry script as a module, imported the way Azure ML does: the code folder importable, ``sys.argv``
    = [script, *program arguments] (scripts read them with ``parse_known_args``)."""
    path = (Path(code_dir) / entry_script).resolve()
    sys.path.insert(0, str(Path(code_dir).resolve()))
    sys.argv = [str(path), *argv]
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load the entry script {entry_script}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    if not callable(getattr(module, "run", None)):
        raise AttributeError(f"the entry script {entry_script} defines no run(mini_batch)")
    return module


def error_of(error: BaseException) -> dict[str, str]:
    text = "".join(traceback.format_exception(error)).splitlines()[-TRACEBACK_LINES:]
    return {"category": type(error).__name__, "message": str(error), "traceback": "\n".join(text)}


# ----------------------------------------------------------------------------------------------- mini-batches


def read_ranges(batch: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(header, rows text) per byte range of the mini-batch: a CSV range gets its file's header line."""
    texts = []
    for path, start, end, header_end in batch["parts"]:
        with open(path, "rb") as source:
            header = source.read(header_end).decode("utf-8-sig") if header_end else ""
            source.seek(start)
            texts.append((header, source.read(end - start).decode("utf-8")))
    return texts


def csv_rows(header: str, text: str, delimiter: str, has_header: bool) -> list[dict[str, str]]:
    if has_header:
        return list(csv.DictReader(io.StringIO(header + text), delimiter=delimiter))
    rows = csv.reader(io.StringIO(text), delimiter=delimiter)
    return [{f"Column{i + 1}": v for i, v in enumerate(row)} for row in rows]


def tabular(batch: Mapping[str, Any]) -> tuple[Any, int]:
    """(the rows, their count): a pandas DataFrame when pandas is importable, as Azure ML passes tabular
    mini-batches; else a list of dicts (delimited files) or of decoded JSON values (JSON Lines)."""
    texts = read_ranges(batch)
    delimiter, has_header = str(batch.get("delimiter", ",")), bool(batch.get("header", True))
    if batch["format"] == "json_lines":
        rows: list[Any] = [json.loads(line) for _, text in texts for line in text.splitlines() if line.strip()]
    else:
        rows = [row for header, text in texts for row in csv_rows(header, text, delimiter, has_header)]
    try:
        import pandas  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:
        return rows, len(rows)
    return pandas.DataFrame(rows), len(rows)


def mini_batch_of(batch: Mapping[str, Any]) -> tuple[Any, int]:
    if batch["kind"] == "files":
        return list(batch["files"]), len(batch["files"])
    return tabular(batch)


# ----------------------------------------------------------------------------------------------- results


def row_text(value: Any) -> str:
    """One ``parallel_run_step.txt`` line for one returned element: a string as is, a sequence's or mapping's
    values joined by spaces, anything else ``str()``."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, Mapping):
        return " ".join(str(v) for v in value.values())
    if isinstance(value, list | tuple):
        return " ".join(str(v) for v in value)
    return str(value)


def rows_of(result: Any) -> list[str]:
    """``run()``'s return value as lines: a DataFrame's rows (values, no header or index), a list's or tuple's
    elements; None is no result at all."""
    if result is None:
        return []
    if hasattr(result, "itertuples"):
        return [" ".join(str(v) for v in row) for row in result.itertuples(index=False, name=None)]
    if isinstance(result, str | bytes) or not hasattr(result, "__iter__"):
        return [row_text(result)]
    return [row_text(v) for v in result]


def process(module: ModuleType, batch: Mapping[str, Any]) -> dict[str, Any]:
    started, cpu = time.monotonic(), time.process_time()
    items, rows, error, run_seconds = 0, [], None, 0.0
    try:
        mini_batch, items = mini_batch_of(batch)
        before = time.monotonic()
        try:
            result = module.run(mini_batch)
        finally:
            run_seconds = time.monotonic() - before
        rows = rows_of(result)
    except Exception as failure:  # an entry script's failure is the mini-batch's, reported to the coordinator
        error = error_of(failure)
    return {
        "event": "result",
        "index": batch["index"],
        "items": items,
        "rows": rows,
        "error": error,
        "elapsed": round(time.monotonic() - started, 3),
        "process_seconds": round(time.process_time() - cpu, 3),
        "run_seconds": round(run_seconds, 3),
    }


def send(channel: IO[str], message: Mapping[str, Any]) -> None:
    channel.write(json.dumps(message) + "\n")
    channel.flush()


def main() -> int:
    config = json.loads(sys.stdin.readline())
    channel = redirect(config["stdout"], config["stderr"])
    logging.basicConfig(
        level=str(config.get("logging_level", "INFO")).upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        module = load(config["code_dir"], config["entry_script"], list(config["argv"]))
        init = getattr(module, "init", None)
        if callable(init):
            init()
    except BaseException as failure:  # SystemExit in init() fails the process too
        traceback.print_exception(failure)
        send(channel, {"event": "init_failed", "error": error_of(failure)})
        return 1
    send(channel, {"event": "ready"})
    for line in sys.stdin:
        message = json.loads(line)
        if message.get("stop"):
            shutdown = getattr(module, "shutdown", None)
            if callable(shutdown):
                shutdown()
            return 0
        send(channel, process(module, message))
    return 0


if __name__ == "__main__":
    sys.exit(main())
