"""Azure ML's parallel runtime on the emulator's AmlCompute nodes: what a run with a ``ParallelTask`` runs.

Two parts: :func:`plan` (pure, no processes) splits the ``input_data`` input into mini-batches, and
:class:`Coordinator` (called by ``RunExecutor`` in place of a command's processes) runs ``instance_count`` x
``max_concurrency_per_instance`` worker processes (``ml/parallel_worker.py``, each its own Python) that pull
mini-batches from one queue the coordinator holds, retries, counts failures against the thresholds, writes
``parallel_run_step.txt`` and the logs a parallel job writes.

Evidence (Azure ML documentation, learn.microsoft.com; the MicrosoftDocs/azure-docs sources of the pages):

- "How to use parallel job in pipeline" (how-to-use-parallel-job-in-pipeline): the input table (``uri_folder``
  or ``mltable`` file lists partitioned by number of files; tabular ``mltable`` by estimated physical size,
  which needs ``transformations: read_delimited``); ``init()``, ``run(mini_batch)`` (a pandas DataFrame for
  tabular data, a list of file paths otherwise; returns a DataFrame, list or tuple whose count is the number
  of succeeded items) and the optional ``shutdown()``; the automation settings: ``mini_batch_error_threshold``
  ("if the count of failed mini-batch is higher than this threshold, the parallel job will be marked as
  failed"; a mini-batch fails when run() raises or returns fewer results than inputs; -1 ignores all),
  ``retry_settings.max_retries`` ("the number of retries when mini-batch is failed or timeout. If all retries
  are failed, the mini-batch will be marked as failed"; [0, int.max], default 2), ``retry_settings.timeout``
  (per run() call, default 60), the item ``error_threshold`` (failed items = inputs minus returns, "higher
  than this threshold" fails the job, -1 default; "set in program arguments" as
  ``--error_threshold``: read there when the node does not set it), ``logging_level`` (default INFO), ``append_row_to``
  ("aggregate all returns from each run of mini-batch and output it into this file"); and "check
  job_result.txt to understand why the parallel job is failed", readme.txt beside it.
- azure-ai-ml 1.35 ``parallel_run_function``: ``mini_batch_size`` "10 files for FileDataset and 1MB for
  TabularDataset", sizes like "1024, 1024KB, 10MB, 1GB"; ``partition_keys`` "the data with the same key will be
  partitioned into the same mini-batch. If both partition_keys and mini_batch_size are specified, the
  partition keys will take effect". (Its ``RetrySettings`` docstring calls ``max_retries`` "maximum tries",
  [1, int.max]; the documentation table above says retries, [0, int.max], default 2: the emulator follows the
  table, so a mini-batch is run at most ``1 + max_retries`` times.)
- ParallelRunStep's append_row output: one file, ``parallel_run_step.txt``, "all outputs separated by line"
  (how-to-use-parallel-run-step, ``append_row_file_name`` default).
- Logs: "ParallelRunStep Performance Tuning Guide" (how-to-tune-performance-of-parallel-run-step):
  ``logs/job_progress_overview.yyyymmddhh.txt`` ("scheduling progress, mini batch processing progress and file
  concatenating progress for append_row"), ``logs/sys/job_report/processed_mini-batches.csv`` with its columns
  (Mini-batch Id, Picked Count, Process, Process Start Time, Total, Succeeded, Failed, Elapsed Seconds, Process
  Seconds, Run Method Seconds, Status, Error Category, Error Message, Mini-batch Detail) and statuses
  RUN_DONE / RUN_TIMEOUT / RUN_EXCEPTION; "Troubleshooting batch endpoints": ``logs/user/error.txt`` (a summary
  of the script's errors), ``logs/user/error/<ip_address>/<process_name>.txt`` (stack traces),
  ``logs/user/stdout/<ip_address>/<process_name>.stdout.txt`` and ``logs/user/stderr/…/….stderr.txt`` (the entry
  script's output), process names ``process000``…; Azure's own perf sample reads
  ``ExperimentRun/dcid.{run}/logs/sys/job_report/processed_mini-batches.csv``: ``logs/`` is uploaded with the
  run's artifacts.
- While the job runs: the tuning guide says the progress overview "provides a user readable text as the job is
  running"; "Troubleshooting ParallelRunStep" (how-to-debug-parallel-run-step, "How to check job progress?") that
  "the count of scheduled/processed mini-batches and the progress of generating output can be viewed in
  ``~/logs/job_progress_overview.<timestamp>.txt``", which gives "the number of mini-batches (also known as tasks)
  created so far and number of mini-batches processed so far", and "Files in logs folder will be uploaded and show
  up in the portal"; the same guide: "A small mini_batch_size help us to know the progress in fine grain" (progress
  moves a mini-batch at a time). So the overview and the job report grow as mini-batches settle and are uploaded
  while the job runs (:attr:`Coordinator.on_progress`; ``ml/jobs.py`` uploads), not only when it finalizes.

The emulator's choices (no public evidence): when Azure ML uploads ``logs/`` during a run (here: after each
settled mini-batch, uploads coalescing so at most one is in flight and one waits); that the job report grows row
by row during the run (its rows are the final report's, in the same order); the wording inside
``job_progress_overview`` (its first line says "N mini-batches created (M items).", then "K of N mini-batches
processed." per settled mini-batch), ``job_result.txt``
and ``readme.txt``, and of the job's error when a threshold is exceeded (code ``UserError``, the message
naming the threshold and the counts); ``logs/sys/job_report/failed_mini-batches.csv`` (the same columns, the
final failed pick of each failed mini-batch); a run() that returns fewer results than inputs is not retried
(retrying would duplicate the rows it returned); rows of ``parallel_run_step.txt`` in mini-batch order; size
units are binary (1 KB = 1024 bytes); a CSV row is one line; file ``partition_keys`` are ``key=value`` folder
names in the file's path (tabular ones are columns); an ``init()`` that fails fails the job, naming the process.
Row formatting (what one returned element becomes): a string as is, a list/tuple/dict's values space-joined, a
DataFrame row's values space-joined without header or index, anything else ``str()`` — what amlops' own
driver writes too (tests/emulator/ml/test_parallel_runtime.py checks both agree).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import itertools
import json
import re
import shlex
import subprocess
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from amlops_emulator.processes import kill_group

if TYPE_CHECKING:
    from amlops_emulator.ml.execution import ParallelTask

WORKER = Path(__file__).with_name("parallel_worker.py")
APPEND_ROW_FILE = "parallel_run_step.txt"
DEFAULT_FILES = 10
DEFAULT_BYTES = 1 << 20
PROTOCOL_LINE_LIMIT = 64 << 20  # a result line carries the mini-batch's rows
MLTABLE = "MLTable"

_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]?)b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}

PROCESSED_REPORT = "sys/job_report/processed_mini-batches.csv"  # under logs/
FAILED_REPORT = "sys/job_report/failed_mini-batches.csv"
DONE, TIMEOUT, EXCEPTION, EXITED = "RUN_DONE", "RUN_TIMEOUT", "RUN_EXCEPTION", "PROCESS_EXITED"
REPORT_COLUMNS = (
    "Mini-batch Id", "Picked Count", "Process", "Process Start Time", "Total", "Succeeded", "Failed",
    "Elapsed Seconds", "Process Seconds", "Run Method Seconds", "Status", "Error Category", "Error Message",
    "Mini-batch Detail",
)  # fmt: skip


class PlanError(ValueError):
    """The input or the settings cannot be split into mini-batches (a UserError at submission or start)."""


# ----------------------------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class Reading:
    """How the worker reads a tabular mini-batch's rows (the MLTable's ``read_*`` transformation)."""

    format: str  # "delimited" | "json_lines"
    delimiter: str = ","
    header: bool = True


@dataclass(frozen=True)
class MiniBatch:
    index: int
    items: int
    files: tuple[str, ...] = ()  # file input: paths relative to the input's root
    parts: tuple[tuple[str, int, int, int], ...] = ()  # tabular: (file, start, end, header end), byte offsets

    def detail(self) -> str:
        if self.files:
            return json.dumps({"files": list(self.files)})
        return json.dumps({"ranges": [list(p) for p in self.parts]})

    def message(self, root: Path, reading: Reading | None) -> dict[str, Any]:
        """What the worker gets, with the node's paths."""
        if reading is None:
            return {"index": self.index, "kind": "files", "files": [str(root / f) for f in self.files]}
        return {
            "index": self.index,
            "kind": "tabular",
            "format": reading.format,
            "delimiter": reading.delimiter,
            "header": reading.header,
            "parts": [[str(root / f), start, end, header] for f, start, end, header in self.parts],
        }


@dataclass(frozen=True)
class Plan:
    batches: tuple[MiniBatch, ...]
    reading: Reading | None  # None: a file input

    @property
    def items(self) -> int:
        return sum(b.items for b in self.batches)


def plan(task: ParallelTask, kind: str, source: Path) -> Plan:
    """Mini-batches of the ``input_data`` input, fetched at ``source`` (a file for ``uri_file``, else a folder);
    paths are relative to the input's root on a node (``uri_file``: the folder holding the file)."""
    if kind == "uri_file":
        return Plan((MiniBatch(0, 1, files=(source.name,)),), None)
    if kind == "uri_folder":
        files = sorted(p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file())
        return _file_plan(task, files)
    if kind == "mltable":
        files, reading = _mltable(source)
        if reading is None:
            return _file_plan(task, files)
        return _tabular_plan(task, source, files, reading)
    raise PlanError(f"The parallel input_data input is of type '{kind}'; it must be uri_folder, uri_file or mltable.")


def _file_plan(task: ParallelTask, files: list[str]) -> Plan:
    if task.partition_keys:
        groups: dict[tuple[str, ...], list[str]] = {}
        for name in files:
            groups.setdefault(_path_keys(name, task.partition_keys), []).append(name)
        chunks = list(groups.values())
    else:
        size = file_count(task.mini_batch_size)
        chunks = [files[i : i + size] for i in range(0, len(files), size)]
    return Plan(tuple(MiniBatch(i, len(c), files=tuple(c)) for i, c in enumerate(chunks)), None)


def _path_keys(name: str, keys: Sequence[str]) -> tuple[str, ...]:
    found = dict(part.split("=", 1) for part in name.split("/")[:-1] if "=" in part)
    missing = [k for k in keys if k not in found]
    if missing:
        raise PlanError(f"The file '{name}' has no partition key {missing[0]!r} (a '{missing[0]}=<value>' folder).")
    return tuple(found[k] for k in keys)


def file_count(size: str | None) -> int:
    if size is None:
        return DEFAULT_FILES
    text = str(size).strip()
    if not text.isdigit() or int(text) < 1:
        raise PlanError(f"mini_batch_size '{size}' must be a number of files (at least 1) for a file input.")
    return int(text)


def size_bytes(size: str | None) -> int:
    """A tabular ``mini_batch_size`` ("100", "1024 KB", "10MB", "1GB") in bytes; 1 MB when unset."""
    if size is None:
        return DEFAULT_BYTES
    match = _SIZE.match(str(size))
    if match is None or int(match.group(1)) < 1:
        raise PlanError(f"mini_batch_size '{size}' is not a size such as 1024, 1024KB, 10MB or 1GB.")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def _mltable(folder: Path) -> tuple[list[str], Reading | None]:
    """The files an MLTable's ``paths`` name (``file``, ``folder``, ``pattern``; relative to its folder) and its
    ``read_delimited`` / ``read_json_lines`` transformation (None: the table is a list of files)."""
    document = folder / MLTABLE
    if not document.is_file():
        raise PlanError("The mltable input has no MLTable file.")
    spec = yaml.safe_load(document.read_text()) or {}
    files: list[str] = []
    for entry in spec.get("paths") or []:
        files.extend(_mltable_path(folder, entry))
    return files, _reading(spec.get("transformations") or [])


def _mltable_path(folder: Path, entry: Mapping[str, Any]) -> list[str]:
    root = folder.resolve()
    if "file" in entry:
        found = [folder / str(entry["file"])]
    elif "folder" in entry:
        found = sorted(p for p in (folder / str(entry["folder"])).rglob("*") if p.is_file())
    elif "pattern" in entry:
        found = sorted(p for p in folder.glob(str(entry["pattern"]).removeprefix("./")) if p.is_file())
    else:
        raise PlanError(f"The MLTable path {dict(entry)} is none of file, folder, pattern.")
    names = []
    for path in found:
        resolved = path.resolve()
        if not resolved.is_relative_to(root) or not resolved.is_file():
            raise PlanError(f"The MLTable path '{path.relative_to(folder)}' is not a file of the table's folder.")
        names.append(resolved.relative_to(root).as_posix())
    return names


def _reading(transformations: Sequence[Any]) -> Reading | None:
    for step in transformations:
        name, options = (step, {}) if isinstance(step, str) else next(iter(dict(step).items()))
        options = options or {}
        if name == "read_delimited":
            header = str(options.get("header", "all_files_same_headers")) != "no_header"
            return Reading("delimited", str(options.get("delimiter", ",")), header)
        if name == "read_json_lines":
            return Reading("json_lines")
    return None


@dataclass(frozen=True)
class _Row:
    file: str
    start: int
    end: int
    header_end: int
    keys: tuple[str, ...]


def _tabular_plan(task: ParallelTask, folder: Path, files: list[str], reading: Reading) -> Plan:
    rows = [row for name in files for row in _rows(folder, name, reading, task.partition_keys)]
    if task.partition_keys:
        groups: dict[tuple[str, ...], list[_Row]] = {}
        for row in rows:
            groups.setdefault(row.keys, []).append(row)
        chunks = list(groups.values())
    else:
        limit, chunks, size = size_bytes(task.mini_batch_size), [], 0
        for row in rows:
            if not chunks or size >= limit:
                chunks.append([])
                size = 0
            chunks[-1].append(row)
            size += row.end - row.start
    return Plan(tuple(MiniBatch(i, len(c), parts=_ranges(c)) for i, c in enumerate(chunks)), reading)


def _rows(folder: Path, name: str, reading: Reading, keys: Sequence[str]) -> Iterator[_Row]:
    """One row per non-blank line; a delimited file with a header starts with it (every range repeats it)."""
    data = (folder / name).read_bytes()
    offset, header_end, columns = 0, 0, None
    for line in data.splitlines(keepends=True):
        start, offset = offset, offset + len(line)
        if not line.strip():
            continue
        text = line.decode("utf-8-sig" if start == 0 else "utf-8").rstrip("\r\n")
        if reading.format == "delimited" and reading.header and columns is None:
            header_end, columns = offset, next(csv.reader([text], delimiter=reading.delimiter))
            continue
        yield _Row(name, start, offset, header_end, _row_keys(text, reading, columns, keys, name))


def _row_keys(
    text: str, reading: Reading, columns: list[str] | None, keys: Sequence[str], name: str
) -> tuple[str, ...]:
    if not keys:
        return ()
    if reading.format == "json_lines":
        values = json.loads(text)
    else:
        cells = next(csv.reader([text], delimiter=reading.delimiter))
        values = dict(zip(columns or [f"Column{i + 1}" for i in range(len(cells))], cells, strict=False))
    missing = [k for k in keys if k not in values]
    if missing:
        raise PlanError(f"A row of '{name}' has no partition key column {missing[0]!r}.")
    return tuple(str(values[k]) for k in keys)


def _ranges(rows: list[_Row]) -> tuple[tuple[str, int, int, int], ...]:
    """Adjacent rows of one file merged into one byte range."""
    merged: list[tuple[str, int, int, int]] = []
    for row in rows:
        if merged and merged[-1][0] == row.file and merged[-1][2] == row.start:
            merged[-1] = (row.file, merged[-1][1], row.end, row.header_end)
        else:
            merged.append((row.file, row.start, row.end, row.header_end))
    return tuple(merged)


def item_threshold(task: ParallelTask) -> int:
    """The item ``error_threshold``: the node's setting, else ``--error_threshold N`` among the program
    arguments, where Azure ML's documentation table says it is set ("Set in program arguments")."""
    if task.error_threshold >= 0:
        return task.error_threshold
    words = shlex.split(task.program_arguments)
    for flag, value in itertools.pairwise(words):
        if flag == "--error_threshold" and value.lstrip("-").isdigit():
            return int(value)
    return task.error_threshold


def render_arguments(arguments: str, inputs: Mapping[str, Path], outputs: Mapping[str, Path]) -> list[str]:
    """``program_arguments`` with ``${{inputs.x}}`` / ``${{outputs.x}}`` replaced by the node's paths, split as
    a shell would."""
    for name, path in inputs.items():
        arguments = arguments.replace("${{inputs." + name + "}}", shlex.quote(str(path)))
    for name, path in outputs.items():
        arguments = arguments.replace("${{outputs." + name + "}}", shlex.quote(str(path)))
    return shlex.split(arguments)


# ----------------------------------------------------------------------------------------------- running


@dataclass(frozen=True)
class NodeLayout:
    """One node of the attempt as the coordinator sees it."""

    address: str  # its private IP address: Azure ML names per-node log folders after it
    workdir: Path  # holds the code folder and ``logs/``
    inputs: Mapping[str, Path]  # each data input's path (a uri_file input: the file)
    roots: Mapping[str, Path]  # each data input's folder on the node (what plan paths are relative to)
    outputs: Mapping[str, Path]  # each named output's folder
    environment: Mapping[str, str]


@dataclass
class _Pick:
    """One try of one mini-batch by one process: a row of processed_mini-batches.csv."""

    batch: MiniBatch
    picked: int
    process: str
    started: datetime
    status: str = DONE
    succeeded: int = 0
    error: Mapping[str, str] | None = None
    elapsed: float = 0.0
    process_seconds: float = 0.0
    run_seconds: float = 0.0
    clock: float = field(default_factory=time.monotonic)  # real time: user processes run in real time

    def row(self) -> list[str]:
        error = self.error or {}
        return [
            str(self.batch.index), str(self.picked), self.process, self.started.isoformat(),
            str(self.batch.items), str(self.succeeded), str(self.batch.items - self.succeeded),
            f"{self.elapsed:.3f}", f"{self.process_seconds:.3f}", f"{self.run_seconds:.3f}", self.status,
            error.get("category", ""), error.get("message", ""), self.batch.detail(),
        ]  # fmt: skip


@dataclass
class _Worker:
    process: asyncio.subprocess.Process
    name: str  # e.g. "10.0.0.4/process000"

    timed_out: bool = False

    async def receive(self, within: float | None = None) -> dict[str, Any] | None:
        """The next message, or None when the process is gone, or did not answer ``within`` seconds (then it is
        killed and :attr:`timed_out` says so)."""
        assert self.process.stdout is not None
        try:
            line = await asyncio.wait_for(self.process.stdout.readline(), within)
        except TimeoutError:
            self.timed_out, line = True, b""
        except ValueError:  # a line longer than the protocol's limit
            line = b""
        if not line:
            kill_group(self.process.pid)
            await self.process.wait()
            return None
        message: dict[str, Any] = json.loads(line)
        return message

    async def send(self, message: Mapping[str, Any]) -> bool:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write((json.dumps(message) + "\n").encode())
            await self.process.stdin.drain()
        except (ConnectionError, BrokenPipeError):
            return False
        return True


@dataclass
class Coordinator:
    """Runs a parallel task on the nodes of one attempt; :meth:`run` answers the job's error (None: Completed).

    ``processes`` is the run's process list: every worker is added to it, so the executor's kill (cancel,
    preemption, ``limits.timeout``) reaches them; ``stopped`` says the executor stopped the attempt."""

    task: ParallelTask
    plan: Plan
    nodes: Sequence[NodeLayout]
    processes: list[asyncio.subprocess.Process]
    stopped: Callable[[], bool]
    now: Callable[[], datetime]
    # Called whenever the job report or the progress overview changed (the run's start, each mini-batch
    # settled): the executor uploads them while the job runs, as Azure ML's progress overview is "a user
    # readable text as the job is running".
    on_progress: Callable[[], None] = lambda: None
    _queue: deque[MiniBatch] = field(default_factory=deque)
    _picks: Counter[int] = field(default_factory=Counter)
    _outstanding: int = 0
    _failed_items: int = 0
    _failed_batches: list[_Pick] = field(default_factory=list)
    _report: list[_Pick] = field(default_factory=list)
    _rows: dict[int, list[str]] = field(default_factory=dict)
    _error: dict[str, Any] | None = None
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _started: datetime | None = None
    _abandoned: bool = False

    @property
    def master(self) -> NodeLayout:
        return self.nodes[0]

    async def run(self) -> dict[str, Any] | None:
        self._started = self.now()
        self._queue.extend(self.plan.batches)
        self._outstanding = len(self.plan.batches)
        await asyncio.to_thread(self._start_report)
        self._progress(f"{len(self.plan.batches)} mini-batches created ({self.plan.items} items).")
        self.on_progress()
        slots = [
            self._slot(node, f"process{local:03d}")
            for node in self.nodes
            for local in range(self.task.max_concurrency_per_instance)
        ]
        await asyncio.gather(*slots)
        if not self.stopped() and not self._abandoned:
            await asyncio.to_thread(self._write_results)
        return self._error

    # -------------------------------------------------------------- one process slot

    async def _slot(self, node: NodeLayout, name: str) -> None:
        """Keeps one worker process of ``node`` busy until the queue is drained; a process that died or hung is
        replaced (its ``init()`` runs again: once per process) while mini-batches remain."""
        try:
            first = True
            while not self._over() and (first or self._outstanding > 0):
                first = False
                worker = await self._start(node, name)
                if worker is None:
                    return
                while True:
                    batch = await self._take()
                    if batch is None:
                        await self._stop(worker)
                        return
                    if not await self._process(worker, node, batch):
                        break  # the process is gone: a fresh one takes the next mini-batch
        finally:
            async with self._changed:  # a slot that leaves (stopped, aborted) wakes the ones waiting for work
                self._changed.notify_all()

    async def _start(self, node: NodeLayout, name: str) -> _Worker | None:
        logs = node.workdir / "logs" / "user"
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(WORKER),
            cwd=node.workdir,
            env=dict(node.environment),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            limit=PROTOCOL_LINE_LIMIT,
        )
        self.processes.append(process)
        worker = _Worker(process, f"{node.address}/{name}")
        if self._over():  # stopped while starting: the executor's kill may have missed it
            kill_group(process.pid)
            await process.wait()
            return None
        config = {
            "code_dir": str(node.workdir),
            "entry_script": self.task.entry_script,
            "argv": render_arguments(self.task.program_arguments, node.inputs, node.outputs),
            "logging_level": self.task.logging_level,
            "stdout": str(logs / "stdout" / node.address / f"{name}.stdout.txt"),
            "stderr": str(logs / "stderr" / node.address / f"{name}.stderr.txt"),
        }
        ready = await worker.receive() if await worker.send(config) else None
        if ready is not None and ready.get("event") == "ready":
            return worker
        if not self._over():
            error = (ready or {}).get("error") or {"message": "the process exited while its init() ran"}
            await asyncio.to_thread(self._trace, node, name, None, error)
            self._fail(
                f"The entry script's init() failed in {worker.name}: {error.get('message', '')}",
            )
        kill_group(process.pid)
        await process.wait()
        return None

    async def _take(self) -> MiniBatch | None:
        async with self._changed:
            await self._changed.wait_for(lambda: bool(self._queue) or self._outstanding == 0 or self._over())
            if self._over() or not self._queue:
                return None
            return self._queue.popleft()

    async def _process(self, worker: _Worker, node: NodeLayout, batch: MiniBatch) -> bool:
        """Runs one mini-batch; False when the process is gone (crashed, killed for its timeout, or stopped)."""
        self._picks[batch.index] += 1
        pick = _Pick(batch, self._picks[batch.index], worker.name, self.now())
        sent = await worker.send(batch.message(node.roots[self.task.input_data], self.plan.reading))
        answer = await worker.receive(self.task.timeout_seconds) if sent else None
        if self._over():
            return False
        if answer is None:
            pick.elapsed = time.monotonic() - pick.clock
            pick.status = TIMEOUT if worker.timed_out else EXITED
            pick.error = {
                "category": "RunTimeout" if worker.timed_out else "ProcessExited",
                "message": f"run() did not return within {self.task.timeout_seconds:g} seconds"
                if worker.timed_out
                else f"the process exited with code {worker.process.returncode} while running the mini-batch",
            }
        else:
            pick.error = answer.get("error")
            pick.status = EXCEPTION if pick.error else DONE
            pick.elapsed, pick.process_seconds = float(answer["elapsed"]), float(answer["process_seconds"])
            pick.run_seconds = float(answer["run_seconds"])
            if pick.error is None:
                rows = list(answer["rows"])
                pick.succeeded = min(len(rows), batch.items)
                self._rows[batch.index] = rows
        if pick.error is not None:
            await asyncio.to_thread(self._trace, node, worker.name.split("/")[-1], batch, pick.error)
        await self._settle(pick)
        return answer is not None

    async def _settle(self, pick: _Pick) -> None:
        """Records a pick: done, back in the queue for another try, or failed for good (thresholds checked)."""
        self._report.append(pick)
        self._append_report(PROCESSED_REPORT, pick)
        retry = pick.error is not None and pick.picked <= self.task.max_retries
        async with self._changed:
            if retry:
                self._queue.append(pick.batch)
            else:
                self._outstanding -= 1
                failed = pick.batch.items - pick.succeeded
                if failed:
                    self._failed_items += failed
                    self._failed_batches.append(pick)
                    self._append_report(FAILED_REPORT, pick)
                done = len(self.plan.batches) - self._outstanding
                self._progress(f"{done} of {len(self.plan.batches)} mini-batches processed.")
                self._check_thresholds()
            self._changed.notify_all()
        self.on_progress()

    def _check_thresholds(self) -> None:
        batches, items = len(self._failed_batches), self._failed_items
        if self.task.mini_batch_error_threshold >= 0 and batches > self.task.mini_batch_error_threshold:
            self._fail(
                f"The number of failed mini-batches ({batches}) exceeded mini_batch_error_threshold "
                f"({self.task.mini_batch_error_threshold})."
            )
        elif (limit := item_threshold(self.task)) >= 0 and items > limit:
            self._fail(f"The number of failed items ({items}) exceeded error_threshold ({limit}).")

    def _fail(self, reason: str) -> None:
        """The job is aborted: no mini-batch starts any more, every worker is killed."""
        if self._error is not None:
            return
        self._error = {
            "code": "UserError",
            "message": f"{reason} Please check logs/job_result.txt and logs/readme.txt for details.",
        }
        self._progress(f"The job failed: {reason}")
        for process in self.processes:
            if process.returncode is None:
                kill_group(process.pid)

    def abandon(self) -> None:
        """The executor gave up on the attempt (``limits.timeout``, shutdown): start nothing more."""
        self._abandoned = True

    def _over(self) -> bool:
        return self._error is not None or self._abandoned or self.stopped()

    async def _stop(self, worker: _Worker) -> None:
        """The queue is drained: ``shutdown()`` (within the run() timeout), then the process exits."""
        if await worker.send({"stop": True}):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(worker.process.wait(), self.task.timeout_seconds)
        kill_group(worker.process.pid)
        await worker.process.wait()

    # -------------------------------------------------------------- logs and results

    def _logs(self) -> Path:
        return self.master.workdir / "logs"

    def _progress(self, line: str) -> None:
        started = self._started or self.now()
        path = self._logs() / f"job_progress_overview.{started:%Y%m%d%H}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as overview:
            overview.write(f"{self.now().isoformat()} {line}\n")

    def _trace(self, node: NodeLayout, name: str, batch: MiniBatch | None, error: Mapping[str, str]) -> None:
        path = node.workdir / "logs" / "user" / "error" / node.address / f"{name}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        what = "init()" if batch is None else f"mini-batch {batch.index}"
        with path.open("a") as traces:
            traces.write(f"{self.now().isoformat()} {what}: {error.get('traceback') or error.get('message')}\n")

    def _start_report(self) -> None:
        """The job report's files with their header row: each settled pick appends its row (as it happens, so
        the report read while the job runs is the final report's beginning)."""
        for name in (PROCESSED_REPORT, FAILED_REPORT):
            path = self._logs() / name
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_csv(path, [])

    def _append_report(self, name: str, pick: _Pick) -> None:
        text = io.StringIO()
        csv.writer(text).writerow(pick.row())
        with (self._logs() / name).open("a") as report:
            report.write(text.getvalue())

    def _write_results(self) -> None:
        logs = self._logs()
        if self.task.append_row_to is not None and self._error is None:
            target = self.master.outputs[self.task.append_row_to] / APPEND_ROW_FILE
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("w", encoding="utf-8") as rows:
                for index in sorted(self._rows):
                    rows.writelines(f"{row}\n" for row in self._rows[index])
            self._progress(f"{APPEND_ROW_FILE} written: {sum(len(r) for r in self._rows.values())} rows.")
        errors = [p for p in self._report if p.error is not None]
        (logs / "user").mkdir(parents=True, exist_ok=True)
        (logs / "user" / "error.txt").write_text(
            "".join(f"mini-batch {p.batch.index} ({p.process}): {(p.error or {}).get('message')}\n" for p in errors)
        )
        (logs / "job_result.txt").write_text(self._result_text())
        (logs / "readme.txt").write_text(README)
        if self._error is None:
            self._progress("The job completed.")

    def _result_text(self) -> str:
        batches = len(self.plan.batches)
        counts = (
            f"{batches - len(self._failed_batches)} of {batches} mini-batches succeeded, "
            f"{self.plan.items - self._failed_items} of {self.plan.items} items succeeded, "
            f"{len(self._failed_batches)} mini-batches and {self._failed_items} items failed.\n"
        )
        if self._error is not None:
            return f"Failed: {self._error['message']}\n{counts}"
        return f"Completed.\n{counts}"


def _write_csv(path: Path, rows: list[list[str]]) -> None:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(REPORT_COLUMNS)
    writer.writerows(rows)
    path.write_text(text.getvalue())


def progress_files(logs: Path) -> dict[str, bytes]:
    """What a running parallel job's progress is read from, by path under ``logs/``: the progress overview(s) and
    the job report (``sys/job_report/*.csv``). Read whole: each upload replaces the blob with the file so far."""
    found = [*logs.glob("job_progress_overview.*.txt"), *(logs / "sys" / "job_report").glob("*.csv")]
    return {p.relative_to(logs).as_posix(): p.read_bytes() for p in sorted(found) if p.is_file()}


README = """\
Logs of this parallel job (the Azure ML emulator's layout):
job_progress_overview.<yyyymmddhh>.txt  scheduling and processing progress, then the job's result
job_result.txt                          the job's result; why it failed, if it did
sys/job_report/processed_mini-batches.csv  one row per processing of a mini-batch
sys/job_report/failed_mini-batches.csv     the mini-batches that failed for good
user/stdout/<ip_address>/<process_name>.stdout.txt  the entry script's standard output
user/stderr/<ip_address>/<process_name>.stderr.txt  its standard error and logging
user/error/<ip_address>/<process_name>.txt          stack traces of init() and run() failures
user/error.txt                          a summary of the entry script's errors
"""
