"""ParallelJob node driver: runs the user's entry script over one mini-batch on an Azure Batch node.

Standard library only: the operator uploads this file as a resource file, and the node has no amlops (and
perhaps no pip packages at all). The command line (built by ``amlops.runtime.command``)::

    python3 driver.py --mini-batch <env:AMLOPS_MINI_BATCH, manifest URL or path> --summary env:AMLOPS_SUMMARY_URL
        --code-dir <dir> --entry-script score.py --timeout 60 --logging-level INFO [--rows env:AMLOPS_ROWS_URL]
        [--requirements requirements.txt] [--path inputs.model=job-inputs/model ...] -- <program arguments>

No SAS URL is on it (a command line is visible to every process on the node): ``env:NAME`` names the task's
environment variable that holds one. Each blob the task may touch has its own token: the manifest maps every
input name to a read-only blob SAS URL (``urls``), ``--summary`` is ``<index>.summary.json`` (read + write: a
retry reads the previous attempt's) and ``--rows`` is ``<index>.txt`` (write). Nothing else of the storage
account is reachable from the node.

The entry-script contract is Azure ML's ParallelRunStep one: ``init()`` once per process, then
``run(mini_batch)``. ``mini_batch`` is a list of local file paths for file inputs; for tabular inputs a pandas
DataFrame when pandas is importable, else a list of dicts (CSV) or of decoded JSON values (JSON Lines).
``run()`` returns a list (or DataFrame): each element counts as one successfully processed item, so a result
shorter than the input counts the missing ones as failed items and the mini-batch as failed, as Azure ML does
(the operator reads that from the summary; the task still exits 0, so Batch does not retry it: the emulator's
Azure ML parallel runtime does not retry it either).

Outputs, under the results folder: ``<index>.txt`` (only with ``--rows``, written only when ``run()``
returned) and always ``<index>.summary.json``. Rows follow what Azure ML's ``parallel_run_step.txt`` holds:
one line per returned element; a string as is, a list/tuple or dict (values) space-joined, a DataFrame row's
values space-joined without header or index, anything else ``str()``.

``--path inputs.<name>=<relative path>`` (repeated): where each data input is on the node, relative to the task's
working directory. ``${{inputs.<name>}}`` in the program arguments becomes that path made absolute, as Azure ML
gives the script its inputs' paths (the seed: ``--model ${{inputs.score_model}}``). The inputs other than the
mini-batch's are Batch resource files (one read-only SAS URL per blob, downloaded before the task starts, so
before ``init()``); ``input_data``'s path is the folder the mini-batch's files are downloaded to.

``--requirements`` (``task.environment``'s pip requirements): installed once per node and job with the node's
``python3 -m pip install --target`` into ``$AZ_BATCH_NODE_SHARED_DIR/amlops-envs/<hash of job id and
requirements>`` under a file lock, so concurrent mini-batches of a job on one node build it once and later ones
reuse it, and another job on a shared pool cannot plant a folder this job would use; that folder goes first on
``sys.path`` (and ``PYTHONPATH`` for the script's own subprocesses). A failed install fails the mini-batch
as a setup failure, with pip's last lines as the error.

Exit codes: 0 when ``run()`` returned (item failures included), 1 when it raised, 3 when it exceeded
``--timeout``, 2 when the mini-batch could not be set up (so Batch retries per ``maxTaskRetryCount``), e.g.
when the task's SAS tokens expired while it waited in the queue.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import fcntl
import hashlib
import importlib.util
import io
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_SETUP_FAILED = 2
EXIT_TIMEOUT = 3

HTTP_ATTEMPTS = 4
HTTP_TIMEOUT = 60.0
BLOB_API_VERSION = "2021-08-06"
TRACEBACK_LINES = 20
PIP_TIMEOUT = 3600.0
INPUT_URLS = "urls"  # the manifest's map of input name → read SAS URL (amlops.runtime.command.with_input_urls)
ENVIRONMENTS = "amlops-envs"
COMPLETE_MARK = ".amlops-complete"

# ``${{inputs.x}}`` / ``${{outputs.x}}`` inside a program argument (spaces inside the braces allowed, as Azure ML).
REFERENCE = re.compile(r"\$\{\{\s*((?:inputs|outputs)\.[A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
MINI_BATCH_INPUTS = "inputs"  # where a file mini-batch is downloaded, relative to the task's working directory

log = logging.getLogger("amlops.driver")


class RunTimeout(BaseException):
    """Raised inside ``run()`` by SIGALRM. A BaseException so a user's ``except Exception`` cannot swallow it."""


# ----------------------------------------------------------------------------------------------- blob access


def input_url(manifest: Mapping[str, Any], name: str) -> str:
    """The read SAS URL the operator signed for one input of this mini-batch."""
    urls = manifest.get(INPUT_URLS) or {}
    if name not in urls:
        raise FileNotFoundError(f"the manifest carries no URL for input {name!r}")
    return str(urls[name])


def sas_expiry(url: str) -> datetime.datetime | None:
    """When a SAS URL's token ends (its ``se``), or None when it names none."""
    values = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query).get("se")
    if not values:
        return None
    try:
        stamp = datetime.datetime.fromisoformat(values[0].replace("Z", "+00:00"))
    except ValueError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=datetime.UTC)


def http_get(url: str, start: int | None = None, end: int | None = None) -> bytes | None:
    """The blob's bytes (``[start, end)`` when given), or None when it does not exist."""
    headers = {"x-ms-version": BLOB_API_VERSION}
    if start is not None and end is not None:
        if end <= start:
            return b""
        headers["x-ms-range"] = f"bytes={start}-{end - 1}"
    return _request(urllib.request.Request(url, headers=headers, method="GET"))


def http_put(url: str, data: bytes, content_type: str) -> None:
    headers = {
        "x-ms-version": BLOB_API_VERSION,
        "x-ms-blob-type": "BlockBlob",
        "Content-Type": content_type,
        "Content-Length": str(len(data)),
    }
    _request(urllib.request.Request(url, data=data, headers=headers, method="PUT"))


def _request(request: urllib.request.Request) -> bytes | None:
    for attempt in range(1, HTTP_ATTEMPTS + 1):
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:
                body: bytes = response.read()
                return body
        except urllib.error.HTTPError as error:
            if error.code == 404 and request.get_method() == "GET":
                return None
            if (error.code < 500 and error.code != 429) or attempt == HTTP_ATTEMPTS:
                raise
        except OSError:
            if attempt == HTTP_ATTEMPTS:
                raise
        time.sleep(0.5 * 2**attempt)  # transient: back off and try again
    raise AssertionError("unreachable")


def location_text(location: str) -> str:
    """``env:NAME``'s value, or the text itself (a URL given as is)."""
    if location.startswith("env:"):
        name = location.removeprefix("env:")
        if not os.environ.get(name):
            raise FileNotFoundError(f"environment variable {name} is not set")
        return os.environ[name]
    return location


def read_location(location: str) -> bytes:
    """``env:NAME`` is that environment variable's value (a manifest carried inside its task); a URL is
    downloaded; anything else is a local path (e.g. a Batch resource file)."""
    if location.startswith("env:"):
        name = location.removeprefix("env:")
        if name not in os.environ:
            raise FileNotFoundError(f"environment variable {name} is not set")
        return os.environ[name].encode()
    if location.startswith(("http://", "https://")):
        data = http_get(location)
        if data is None:
            raise FileNotFoundError(location)
        return data
    return Path(location).read_bytes()


# ----------------------------------------------------------------------------------------------- inputs


def local_input_path(root: Path, name: str) -> Path:
    target = (root / name).resolve()
    if not target.is_relative_to(root.resolve()):
        raise ValueError(f"input name {name!r} leaves the inputs folder")
    return target


def download_files(names: Sequence[str], manifest: Mapping[str, Any], root: Path) -> list[str]:
    paths = []
    for name in names:
        target = local_input_path(root, name)
        data = http_get(input_url(manifest, name))
        if data is None:
            raise FileNotFoundError(f"input {name!r} is missing")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        paths.append(str(target))
    return paths


def range_text(
    manifest: Mapping[str, Any], spec: Mapping[str, Any], headers: dict[str, bytes | None]
) -> tuple[str, str]:
    """(header, rows) text of one byte range; the header is empty for JSON Lines. ``headers`` caches each
    file's header: a partitioned mini-batch may hold many ranges of one file."""
    name = str(spec["name"])
    url = input_url(manifest, name)
    header_end = int(spec.get("headerEnd", 0))
    if name not in headers:
        headers[name] = http_get(url, 0, header_end) if header_end else b""
    header = headers[name]
    rows = http_get(url, int(spec["start"]), int(spec["end"]))
    if header is None or rows is None:
        raise FileNotFoundError(f"input {spec['name']!r} is missing")
    try:
        return header.decode("utf-8-sig"), rows.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"input {name!r} is not UTF-8 text ({e}): tabular inputs must be UTF-8") from None


def parse_rows(file_format: str, header: str, text: str) -> list[Any]:
    if file_format == "csv":
        return list(csv.DictReader(io.StringIO(header + text)))
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def tabular_mini_batch(manifest: Mapping[str, Any]) -> tuple[Any, int]:
    """(mini_batch, row count): a DataFrame when pandas is importable, else a list of rows."""
    headers: dict[str, bytes | None] = {}
    texts = [(str(r["format"]), *range_text(manifest, r, headers)) for r in manifest["ranges"]]
    try:
        import pandas  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:
        rows = [row for file_format, header, text in texts for row in parse_rows(file_format, header, text)]
        return rows, len(rows)
    frames = [
        pandas.read_csv(io.StringIO(header + text)) if fmt == "csv" else pandas.read_json(io.StringIO(text), lines=True)
        for fmt, header, text in texts
    ]
    frame = pandas.concat(frames, ignore_index=True) if frames else pandas.DataFrame()
    return frame, len(frame)


def materialise(manifest: Mapping[str, Any], workdir: Path) -> tuple[Any, int]:
    """The ``run()`` argument for a manifest, and how many items it holds."""
    if manifest["kind"] == "files":
        paths = download_files(manifest["files"], manifest, workdir / MINI_BATCH_INPUTS)
        return paths, len(paths)
    return tabular_mini_batch(manifest)


# ----------------------------------------------------------------------------------------------- environment


class EnvironmentBuildError(Exception):
    """pip could not install ``task.environment``'s requirements on this node."""


def environment_key(job_id: str, requirements: bytes) -> str:
    """The folder name of one job's installed requirements on a node. The job id is part of it: tasks of every
    job on a shared pool can write the node's shared folder, so a folder keyed by the requirements alone could
    be planted, complete mark and all, by another job that guessed them."""
    return hashlib.sha256(job_id.encode() + b"\0" + requirements).hexdigest()[:32]


def prepare_environment(requirements: Path, cwd: Path) -> Path:
    """The node's folder of this job's installed requirements, built on first use (see the module docstring)."""
    digest = environment_key(os.environ.get("AZ_BATCH_JOB_ID", ""), requirements.read_bytes())
    root = Path(os.environ.get("AZ_BATCH_NODE_SHARED_DIR") or tempfile.gettempdir()) / ENVIRONMENTS
    target = root / digest
    if (target / COMPLETE_MARK).exists():
        return target
    root.mkdir(parents=True, exist_ok=True)
    with (root / f"{digest}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also when this process dies
        if (target / COMPLETE_MARK).exists():
            return target
        staging = root / f"{digest}.staging"
        shutil.rmtree(staging, ignore_errors=True)
        log.info("installing the environment's requirements into %s", target)
        argv = [sys.executable, "-m", "pip", "install", "--no-input", "--disable-pip-version-check",
                "--target", str(staging), "-r", str(requirements.resolve())]  # fmt: skip
        try:
            done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=PIP_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            raise EnvironmentBuildError(f"pip install did not finish within {PIP_TIMEOUT:g} s") from None
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-TRACEBACK_LINES:])
            raise EnvironmentBuildError(f"pip install -r requirements.txt failed (exit {done.returncode}):\n{tail}")
        (staging / COMPLETE_MARK).touch()
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    return target


def activate(site: Path) -> None:
    sys.path.insert(0, str(site))
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)


# ----------------------------------------------------------------------------------------------- arguments


def render_arguments(arguments: Sequence[str], values: Mapping[str, str]) -> list[str]:
    """Each ``${{inputs.x}}`` / ``${{outputs.x}}`` whose ``inputs.x`` is a key of ``values`` replaced by its value,
    anywhere in an argument (``--model=${{inputs.m}}`` too); other references are left as they are. Arguments
    are already split: a value with spaces stays one argument."""
    return [REFERENCE.sub(lambda match: values.get(match.group(1), match.group(0)), argument) for argument in arguments]


def parse_paths(pairs: Sequence[str], root: Path) -> dict[str, str]:
    """``--path inputs.x=<relative>`` pairs → ``{"inputs.x": "<absolute>"}`` under ``root`` (never outside it)."""
    paths = {}
    for pair in pairs:
        key, sep, relative = pair.partition("=")
        if not sep or not REFERENCE.fullmatch("${{" + key + "}}"):
            raise ValueError(f"--path {pair!r} is not inputs.<name>=<relative path>")
        paths[key] = str(local_input_path(root, relative))
    return paths


# ----------------------------------------------------------------------------------------------- entry script


def load_entry_script(code_dir: Path, entry_script: str, program_arguments: Sequence[str]) -> ModuleType:
    path = (code_dir / entry_script).resolve()
    # As on Azure ML: the code folder is importable and the script sees its program arguments in sys.argv.
    sys.path.insert(0, str(code_dir.resolve()))
    sys.argv = [str(path), *program_arguments]
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load entry script {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    if not callable(getattr(module, "run", None)):
        raise AttributeError(f"entry script {entry_script} defines no run(mini_batch)")
    return module


def call_with_timeout(function: Callable[[Any], Any], argument: Any, seconds: float) -> Any:
    def expired(signum: int, frame: FrameType | None) -> None:
        raise RunTimeout(f"run() exceeded the timeout of {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return function(argument)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# ----------------------------------------------------------------------------------------------- results


def format_row(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, Mapping):
        return " ".join(str(v) for v in value.values())
    if isinstance(value, list | tuple):
        return " ".join(str(v) for v in value)
    return str(value)


def result_rows(result: Any) -> list[str]:
    """``run()``'s return value as output lines. None counts as an empty result (every item failed)."""
    if result is None:
        return []
    if hasattr(result, "itertuples"):  # a pandas DataFrame, without importing pandas
        return [" ".join(str(v) for v in row) for row in result.itertuples(index=False, name=None)]
    if isinstance(result, str | bytes) or not hasattr(result, "__iter__"):
        return [format_row(result)]
    return [format_row(v) for v in result]


def error_text(error: BaseException) -> dict[str, str]:
    lines = traceback.format_exception(error)
    tail = "".join(lines).splitlines()[-TRACEBACK_LINES:]
    return {"type": type(error).__name__, "message": str(error), "traceback": "\n".join(tail)}


def previous_attempt(summary_url: str) -> int:
    """Attempts are counted through the summaries: a retry may run on another node."""
    try:
        data = http_get(summary_url)
        return int(json.loads(data)["attempt"]) if data else 0
    except (OSError, ValueError, KeyError, TypeError):
        return 0


# ----------------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="driver.py", description="Run an entry script over one mini-batch.")
    parser.add_argument("--mini-batch", required=True, help="manifest document: env:NAME, SAS URL or local path")
    parser.add_argument("--code-dir", required=True, type=Path)
    parser.add_argument("--entry-script", required=True)
    parser.add_argument("--summary", required=True, help="<index>.summary.json: env:NAME of its SAS URL")
    parser.add_argument("--rows", help="<index>.txt for run()'s rows: env:NAME of its SAS URL")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per run() call")
    parser.add_argument("--logging-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"])
    parser.add_argument("--requirements", type=Path, help="pip requirements file of task.environment")
    parser.add_argument("--path", action="append", default=[], help="inputs.<name>=<path relative to the task>")
    parser.add_argument("program_arguments", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.program_arguments[:1] == ["--"]:
        args.program_arguments = args.program_arguments[1:]
    return args


def expired(url: str, now: datetime.datetime) -> str | None:
    """Why a task cannot reach its blobs any more (its token ended while it waited), or None."""
    ends = sas_expiry(url)
    if ends is None or now < ends:
        return None
    return (
        f"the task's SAS tokens expired at {ends.isoformat()}: it waited in the queue longer than the job's token "
        "lifetime (activeDeadlineSeconds, else the operator's default); the mini-batch fails without running"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=args.logging_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    try:
        summary_url = location_text(args.summary)
        rows_url = location_text(args.rows) if args.rows else None
    except FileNotFoundError as missing:
        log.error("cannot find the result blobs' URLs: %s", missing)
        return EXIT_SETUP_FAILED
    if (why := expired(summary_url, datetime.datetime.now(datetime.UTC))) is not None:
        log.error("%s", why)
        return EXIT_SETUP_FAILED
    try:
        manifest = json.loads(read_location(args.mini_batch))
        index = int(manifest["index"])
    except Exception:
        # Without the manifest there is no index to report under: log (never the SAS token) and let Batch retry.
        log.exception("cannot read the mini-batch manifest %s", args.mini_batch.split("?", 1)[0])
        return EXIT_SETUP_FAILED
    attempt = previous_attempt(summary_url) + 1
    started = time.monotonic()
    items = 0
    rows: list[str] = []
    error: dict[str, str] | None = None
    code = failure_code = EXIT_SETUP_FAILED
    try:
        (Path.cwd() / MINI_BATCH_INPUTS).mkdir(exist_ok=True)
        program_arguments = render_arguments(args.program_arguments, parse_paths(args.path, Path.cwd()))
        mini_batch, items = materialise(manifest, Path.cwd())
        if args.requirements is not None:
            activate(prepare_environment(args.requirements, args.code_dir))
        module = load_entry_script(args.code_dir, args.entry_script, program_arguments)
        log.info("mini-batch %d: %d item(s), attempt %d", index, items, attempt)
        init = getattr(module, "init", None)
        if callable(init):
            init()
        failure_code = EXIT_RUN_FAILED
        rows = result_rows(call_with_timeout(module.run, mini_batch, args.timeout))
        code = EXIT_OK
    except RunTimeout as timeout:
        error, code = error_text(timeout), EXIT_TIMEOUT
    except KeyboardInterrupt:
        raise
    except BaseException as failure:  # SystemExit from the user's script is a failure too
        error, code = error_text(failure), failure_code
    if error is not None:
        log.error("mini-batch %d failed: %s", index, error["message"])
    processed = min(len(rows), items) if error is None else 0
    summary = {
        "index": index,
        "items": items,
        "processed": processed,
        "failed": items - processed,
        "durationSeconds": round(time.monotonic() - started, 3),
        "error": error,
        "attempt": attempt,
        "node": os.environ.get("AZ_BATCH_NODE_ID"),
    }
    # The rows first: a summary without error promises its rows are there (the aggregation relies on it).
    if error is None and rows_url:
        text = "".join(f"{row}\n" for row in rows)
        http_put(rows_url, text.encode(), "text/plain; charset=utf-8")
    http_put(summary_url, json.dumps(summary).encode(), "application/json")
    return code


if __name__ == "__main__":
    sys.exit(main())
