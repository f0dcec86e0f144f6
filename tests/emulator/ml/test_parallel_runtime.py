"""Azure ML's parallel runtime on the emulator's AmlCompute nodes (``amlops_emulator.ml.parallel``), driven
through ``RunExecutor`` with a real emulator cluster on a frozen virtual clock (allocation 30 s, preparation 60 s).

Evidence (cited in the module doc): Azure ML's "How to use parallel job in pipeline" (mini-batches by files or
size, ``init()``/``run()``, the automation settings' table: ``mini_batch_error_threshold``, ``max_retries`` as
retries with default 2, ``timeout`` per run(), item ``error_threshold``, thresholds "higher than" fail the job,
``append_row_to``, ``job_result.txt``), azure-ai-ml 1.35's ``parallel_run_function`` (defaults, sizes,
``partition_keys`` take precedence), "ParallelRunStep Performance Tuning Guide" (``job_progress_overview.
yyyymmddhh.txt``, ``processed_mini-batches.csv`` and its columns, RUN_DONE/RUN_TIMEOUT/RUN_EXCEPTION),
"Troubleshooting batch endpoints" (``logs/user/stdout|stderr|error/<ip>/<process>``, ``process000``).

User processes run in real time: tests wait on the run's status or on files with a deadline, never on a sleep.
The conformance table at the end runs the same entry scripts and data through amlops' own ParallelJob driver
(``amlops/runtime/driver.py``, on the Batch emulator with Azurite, as tests/emulator/paralleljob does) and
through this runtime, and asserts identical ``parallel_run_step.txt`` rows.
"""

from __future__ import annotations

import csv
import textwrap
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from amlops.external.paralleljob_plan import PlanSpec
from amlops_emulator.ml.execution import ParallelTask, Run, RunInput, RunRequest, RunStatus, SubmitError
from amlops_emulator.ml.parallel import PlanError, plan, size_bytes
from amlops_emulator.server import RunningEmulator
from tests.emulator.arm.conftest import BASE, Arm, aml_body, frozen, frozen_arm, start_emulator
from tests.emulator.paralleljob.conftest import ParallelRun, azurite, client, emulator, parallel, store
from tests.support.waiting import eventually

__all__ = ["azurite", "client", "emulator", "frozen", "frozen_arm", "parallel", "start_emulator", "store"]

pytestmark = pytest.mark.emulator

CPU = f"{BASE}/computes/cpu"
WITHIN = 90.0  # real seconds a condition may take on a loaded machine
FIRST_NODE, SECOND_NODE = "10.0.0.4", "10.0.0.5"  # listNodes' privateIpAddress of nodes 0 and 1


def script(source: str) -> str:
    return textwrap.dedent(source).lstrip()


# Upper-cases each file's word and appends the suffix read in init() from the --model input; records its pid
# (once per init) and each mini-batch's size in $PROBE.
FILE_SCRIPT = script(
    """
    import argparse, logging, os, pathlib

    probe = pathlib.Path(os.environ["PROBE"])
    state = {}

    def init():
        parser = argparse.ArgumentParser()
        parser.add_argument("--model")
        parser.add_argument("--out")
        args, _ = parser.parse_known_args()
        state["suffix"] = pathlib.Path(args.model).read_text().strip()
        state["out"] = args.out
        with (probe / "inits").open("a") as inits:
            inits.write(f"{os.getpid()}\\n")
        print("init done")
        logging.getLogger("score").debug("debug is on")

    def run(mini_batch):
        with (probe / "sizes").open("a") as sizes:
            sizes.write(f"{len(mini_batch)}\\n")
        assert pathlib.Path(state["out"]).is_dir()
        return [
            f"{os.path.basename(path)}: {pathlib.Path(path).read_text().strip().upper()}{state['suffix']}"
            for path in mini_batch
        ]
    """
)

# Tabular rows (no pandas in the test environment: dicts keyed by the header) as [id, name] lists.
TABLE_SCRIPT = script(
    """
    import os, pathlib

    def run(mini_batch):
        with (pathlib.Path(os.environ["PROBE"]) / "sizes").open("a") as sizes:
            sizes.write(f"{len(mini_batch)}\\n")
        return [[row["id"], row["name"]] for row in mini_batch]
    """
)

# JSON Lines rows; one mini-batch must hold one region only.
PARTITION_SCRIPT = script(
    """
    def run(mini_batch):
        regions = {row["region"] for row in mini_batch}
        assert len(regions) == 1, regions
        return [f"{row['region']} {row['id']} of {len(mini_batch)}" for row in mini_batch]
    """
)

# A file named fail<N>-… fails its first N tries (counted in $PROBE), then succeeds; one named short-… gets no
# result (run() returns fewer results than inputs); one named hang-… never returns.
FLAKY_SCRIPT = script(
    """
    import os, pathlib, time

    probe = pathlib.Path(os.environ["PROBE"])

    def init():
        with (probe / "inits").open("a") as inits:
            inits.write(f"{os.getpid()}\\n")

    def run(mini_batch):
        rows = []
        for path in mini_batch:
            name = os.path.basename(path)
            tries = probe / f"tries-{name}"
            with tries.open("a") as count:
                count.write("x")
            if name.startswith("hang-"):
                while True:
                    time.sleep(0.05)
            if name.startswith("fail") and len(tries.read_text()) <= int(name[4]):
                raise RuntimeError(f"{name} fails on purpose")
            if not name.startswith("short-"):
                rows.append(name)
        return rows
    """
)

# A process that dies inside run() on an item's first try (exit-…), and an init() that raises when $BAD_INIT is set.
CRASH_SCRIPT = script(
    """
    import os, pathlib

    probe = pathlib.Path(os.environ["PROBE"])

    def init():
        if os.environ.get("BAD_INIT"):
            raise ValueError("no model here")
        with (probe / "inits").open("a") as inits:
            inits.write(f"{os.getpid()}\\n")

    def run(mini_batch):
        for path in mini_batch:
            tries = probe / f"tries-{os.path.basename(path)}"
            with tries.open("a") as count:
                count.write("x")
            if os.path.basename(path).startswith("exit-") and len(tries.read_text()) == 1:
                os._exit(7)
        return [os.path.basename(p) for p in mini_batch]
    """
)

# Every process waits in run() until 4 processes have run init() (or 60 s passed): proves 4 run at once.
CONCURRENT_SCRIPT = script(
    """
    import os, pathlib, time

    probe = pathlib.Path(os.environ["PROBE"])

    def init():
        (probe / f"init-{os.getpid()}").write_text(os.environ.get("AZUREML_RUN_ID", ""))

    def run(mini_batch):
        deadline = time.monotonic() + 60
        while len(list(probe.glob("init-*"))) < 4:
            if time.monotonic() > deadline:
                raise TimeoutError("fewer than 4 processes ran at once")
            time.sleep(0.02)
        return [os.getpid() for _ in mini_batch]
    """
)

# Records its pid, then run() waits for a file never made (cancel kills it).
WAIT_SCRIPT = script(
    """
    import os, pathlib, time

    probe = pathlib.Path(os.environ["PROBE"])

    def init():
        (probe / f".pid-{os.getpid()}").write_text(str(os.getpid()))
        os.replace(probe / f".pid-{os.getpid()}", probe / f"pid-{os.getpid()}")

    def run(mini_batch):
        while not (probe / "go").exists():
            time.sleep(0.02)
        return mini_batch
    """
)


@pytest.fixture
def probe(tmp_path: Path) -> Path:
    folder = tmp_path / "probe"
    folder.mkdir()
    return folder


def _code(tmp_path: Path, source: str) -> Path:
    folder = tmp_path / "code"
    folder.mkdir(exist_ok=True)
    (folder / "score.py").write_text(source)
    return folder


def _folder(tmp_path: Path, name: str, files: dict[str, str]) -> Path:
    folder = tmp_path / name
    for relative, text in files.items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_text(text)
    return folder


async def _eventually(condition: Callable[[], Any], what: str, within: float = WITHIN) -> None:
    await eventually(condition, what, within)


async def _cluster(arm: Arm, max_nodes: int = 1) -> None:
    status, _, _ = await arm.call("PUT", CPU, aml_body(vm_size="Standard_DS2_v2", max_nodes=max_nodes))
    assert status == 201
    await arm.advance(30)  # provisioned


async def _run(
    running: RunningEmulator,
    arm: Arm,
    run_id: str,
    task: ParallelTask,
    code: Path,
    inputs: tuple[RunInput, ...],
    probe: Path,
    *,
    instance_count: int = 1,
    outputs: tuple[str, ...] = ("out",),
    wait: bool = True,
    progress: Callable[[Run, dict[str, bytes]], Awaitable[None]] | None = None,
) -> Run:
    request = RunRequest(
        run_id,
        CPU,
        "",
        instance_count=instance_count,
        environment_variables={"PROBE": str(probe)},
        code=code,
        outputs=outputs,
        inputs=inputs,
        parallel=task,
        progress=progress,
    )
    run = running.state.runs.submit(request)
    await arm.advance(90)  # nodes allocated and prepared
    if wait:
        await _eventually(lambda: run.done, f"run {run_id} ends (now {run.status})")
    return run


def _rows(run: Run, output: str = "out") -> list[str]:
    return (run.named_outputs / output / "parallel_run_step.txt").read_text().splitlines()


def _report(run: Run, name: str = "processed_mini-batches.csv") -> list[dict[str, str]]:
    with (run.parallel_logs / "sys" / "job_report" / name).open() as report:
        return list(csv.DictReader(report))


def _names(folder: Path, prefix: str) -> list[str]:
    """The names after ``prefix`` of the files in ``folder`` that start with it (pids the scripts record)."""
    return sorted(p.name.removeprefix(prefix) for p in folder.glob(f"{prefix}*"))


def _status(run: Run) -> RunStatus:
    return run.status


WORDS = {f"item-{i}.txt": f"word{i}" for i in range(5)}


async def test_file_input_one_row_per_item_in_mini_batches_of_files_with_the_logs(
    frozen: RunningEmulator, frozen_arm: Arm, tmp_path: Path, probe: Path
) -> None:
    """uri_folder input, mini_batch_size "2": 3 mini-batches (2, 2, 1 files); init() once in the one process,
    the program arguments with ${{inputs.model}} (a uri_file: the file's path) and ${{outputs.out}} replaced;
    append_row_to → parallel_run_step.txt with one line per item; the logs a parallel job writes:
    job_progress_overview.<yyyymmddhh>.txt, job_result.txt, processed_mini-batches.csv (the tuning guide's
    columns, one RUN_DONE row per mini-batch), the entry script's stdout/stderr per process under the node's
    IP, logging_level DEBUG reaching the script's logger."""
    await _cluster(frozen_arm)
    data = _folder(tmp_path, "data", WORDS)
    model = _folder(tmp_path, "model", {"model.txt": "!"}) / "model.txt"
    task = ParallelTask(
        "score.py",
        "data",
        program_arguments="--model ${{inputs.model}} --out ${{outputs.out}}",
        mini_batch_size="2",
        logging_level="DEBUG",
        append_row_to="out",
    )
    inputs = (RunInput("data", "uri_folder", data), RunInput("model", "uri_file", model))
    run = await _run(frozen, frozen_arm, "files", task, _code(tmp_path, FILE_SCRIPT), inputs, probe)

    assert _status(run) == RunStatus.COMPLETED, run.error
    assert [str(s) for s, _ in run.history] == [
        "NotStarted",
        "Queued",
        "Preparing",
        "Running",
        "Finalizing",
        "Completed",
    ]
    assert _rows(run) == [f"item-{i}.txt: WORD{i}!" for i in range(5)]
    assert sorted((probe / "sizes").read_text().split()) == ["1", "2", "2"]
    assert len((probe / "inits").read_text().split()) == 1
    report = _report(run)
    assert list(report[0]) == [
        "Mini-batch Id", "Picked Count", "Process", "Process Start Time", "Total", "Succeeded", "Failed",
        "Elapsed Seconds", "Process Seconds", "Run Method Seconds", "Status", "Error Category", "Error Message",
        "Mini-batch Detail",
    ]  # fmt: skip
    assert sorted((r["Mini-batch Id"], r["Total"], r["Succeeded"], r["Status"]) for r in report) == [
        ("0", "2", "2", "RUN_DONE"),
        ("1", "2", "2", "RUN_DONE"),
        ("2", "1", "1", "RUN_DONE"),
    ]
    assert {r["Process"] for r in report} == {f"{FIRST_NODE}/process000"}
    logs = run.parallel_logs
    [overview] = logs.glob("job_progress_overview.*.txt")
    assert len(overview.name.split(".")[1]) == len("yyyymmddhh")
    text = overview.read_text()
    assert "3 mini-batches created (5 items)." in text
    assert "3 of 3 mini-batches processed." in text
    assert "The job completed." in text
    assert (logs / "job_result.txt").read_text().startswith("Completed.")
    assert (logs / "user" / "stdout" / FIRST_NODE / "process000.stdout.txt").read_text() == "init done\n"
    assert "debug is on" in (logs / "user" / "stderr" / FIRST_NODE / "process000.stderr.txt").read_text()
    assert (logs / "readme.txt").is_file()


async def test_tabular_mltable_is_split_by_size_and_rows_keep_their_order(
    frozen: RunningEmulator, frozen_arm: Arm, tmp_path: Path, probe: Path
) -> None:
    """An mltable input (MLTable: paths by pattern and by file, read_delimited) with mini_batch_size "40"
    (bytes): rows go to run() as dicts keyed by the header (no pandas here), a mini-batch closes once its rows
    reach 40 bytes (each row below is 10 bytes: 4 rows per mini-batch); a mini-batch may span two files, each
    range read with its own file's header."""
    await _cluster(frozen_arm)
    first = "id,name\n" + "".join(f"{i},name-{i:02d}\n" for i in range(6))  # "0,name-00\n": 10 bytes
    second = "id,name\n" + "".join(f"{i},name-{i:02d}\n" for i in range(6, 9))
    mltable = script(
        """
        paths:
          - pattern: ./part-*.csv
          - file: ./extra/last.csv
        transformations:
          - read_delimited:
              delimiter: ','
              header: all_files_same_headers
        """
    )
    table = _folder(
        tmp_path,
        "table",
        {"MLTable": mltable, "part-1.csv": first, "extra/last.csv": second, "part-0.txt": "not data"},
    )
    task = ParallelTask("score.py", "table", mini_batch_size="40", append_row_to="out")
    inputs = (RunInput("table", "mltable", table),)
    run = await _run(frozen, frozen_arm, "tabular", task, _code(tmp_path, TABLE_SCRIPT), inputs, probe)

    assert _status(run) == RunStatus.COMPLETED, run.error
    assert _rows(run) == [f"{i} name-{i:02d}" for i in range(9)]
    assert sorted(int(n) for n in (probe / "sizes").read_text().split()) == [1, 4, 4]


async def test_partition_keys_group_rows_by_their_values_over_mini_batch_size(
    frozen: RunningEmulator, frozen_arm: Arm, tmp_path: Path, probe: Path
) -> None:
    """partition_keys take precedence over mini_batch_size (azure-ai-ml's docstring): one mini-batch per
    region, however small mini_batch_size is; read_json_lines rows are the decoded objects."""
    await _cluster(frozen_arm)
    lines = [("eu", 1), ("us", 2), ("eu", 3), ("ap", 4), ("us", 5)]
    rows = "".join(f'{{"region": "{r}", "id": {i}}}\n' for r, i in lines)
    table = _folder(
        tmp_path,
        "table",
        {"MLTable": "paths:\n  - file: ./rows.jsonl\ntransformations:\n  - read_json_lines: {}\n", "rows.jsonl": rows},
    )
    task = ParallelTask("score.py", "table", mini_batch_size="1", partition_keys=("region",), append_row_to="out")
    inputs = (RunInput("table", "mltable", table),)
    run = await _run(frozen, frozen_arm, "partitions", task, _code(tmp_path, PARTITION_SCRIPT), inputs, probe)

    assert _status(run) == RunStatus.COMPLETED, run.error
    assert _rows(run) == ["eu 1 of 2", "eu 3 of 2", "us 2 of 2", "us 5 of 2", "ap 4 of 1"]
    assert len(_report(run)) == 3


async def test_two_nodes_two_processes_each_pull_from_one_queue_and_init_once(
    frozen: RunningEmulator, frozen_arm: Arm, tmp_path: Path, probe: Path
) -> None:
    """instance_count 2 x max_concurrency_per_instance 2: four processes run at once (every run() waits for
    all four inits), each calls init() once, every item gets its row; the per-process logs are under each
    node's IP address as process000 and process001."""
    await _cluster(frozen_arm, max_nodes=2)
    data = _folder(tmp_path, "data", {f"{i}.txt": str(i) for i in range(8)})
    task = ParallelTask("score.py", "data", mini_batch_size="1", max_concurrency_per_instance=2, append_row_to="out")
    inputs = (RunInput("data", "uri_folder", data),)
    code = _code(tmp_path, CONCURRENT_SCRIPT)
    run = await _run(frozen, frozen_arm, "concurrent", task, code, inputs, probe, instance_count=2)

    assert _status(run) == RunStatus.COMPLETED, run.error
    pids = _names(probe, "init-")
    assert len(pids) == 4, "one init() per process, four processes"
    assert set(_rows(run)) <= set(pids)
    assert len(_rows(run)) == 8
    assert {r["Process"] for r in _report(run)} <= {
        f"{node}/process00{k}" for node in (FIRST_NODE, SECOND_NODE) for k in (0, 1)
    }
    stdout = run.parallel_logs / "user" / "stdout"
    assert sorted(str(p.relative_to(stdout)) for p in stdout.rglob("*.txt")) == [
        f"{node}/process00{k}.stdout.txt" for node in (FIRST_NODE, SECOND_NODE) for k in (0, 1)
    ]


async def test_retries_at_the_boundary(frozen: RunningEmulator, frozen_arm: Arm, tmp_path: Path, probe: Path) -> None:
    """retry_settings.max_retries 2 (retries after the first try, per the documentation's table): a mini-batch
    failing 2 times succeeds on its third try; one failing 3 times is failed for good after 3 picks (Picked
    Count 1..3 in processed_mini-batches.csv, RUN_EXCEPTION), listed in failed_mini-batches.csv, its traceback in
    logs/user/error/<ip>/process000.txt. The job still completes (thresholds -1)."""
    await _cluster(frozen_arm)
    data = _folder(tmp_path, "data", {"fail2-a.txt": "a", "fail3-b.txt": "b"})
    task = ParallelTask("score.py", "data", mini_batch_size="1", max_retries=2, append_row_to="out")
    inputs = (RunInput("data", "uri_folder", data),)
    run = await _run(frozen, frozen_arm, "retries", task, _code(tmp_path, FLAKY_SCRIPT), inputs, probe)

    assert _status(run) == RunStatus.COMPLETED, run.error
    assert _rows(run) == ["fail2-a.txt"]
    picks = [(r["Mini-batch Id"], r["Picked Count"], r["Status"]) for r in _report(run)]
    assert sorted(picks) == [
        ("0", "1", "RUN_EXCEPTION"),
        ("0", "2", "RUN_EXCEPTION"),
        ("0", "3", "RUN_DONE"),
        ("1", "1", "RUN_EXCEPTION"),
        ("1", "2", "RUN_EXCEPTION"),
        ("1", "3", "RUN_EXCEPTION"),
    ]
    [failed] = _report(run, "failed_mini-batches.csv")
    assert (failed["Mini-batch Id"], failed["Error Category"]) == ("1", "RuntimeError")
    assert "fail3-b.txt fails on purpose" in failed["Error Message"]
    trace = (run.parallel_logs / "user" / "error" / FIRST_NODE / "process000.txt").read_text()
    assert "RuntimeError: fail3-b.txt fails on purpose" in trace
    assert "1 of 2 mini-batches succeeded" in (run.parallel_logs / "job_result.txt").read_text()
    assert len((probe / "inits").read_text().split()) == 1, "an exception in run() keeps the process"


async def test_a_hanging_run_is_killed_at_its_timeout_retried_then_counted_failed(
    frozen: RunningEmulator, frozen_arm: Arm, tmp_path: Path, probe: Path
) -> None:
    """retry_settings.timeout (per run() call): a run() that never returns is killed at the timeout and its
    mini-batch retried (max_retries 1: two picks, both RUN_TIMEOUT), then failed; a kill replaces the process
    while mini-batches remain (the one process: the hung mini-batch goes back behind the other, so 2 processes,
    each calling init() once). The other item's row is written; mini_batch_error_threshold 1 is not exceeded by
    one failed mini-batch."""
    await _cluster(frozen_arm)
    data = _folder(tmp_path, "data", {"hang-a.txt": "a", "ok-b.txt": "b"})
    task = ParallelTask(
        "score.py",
        "data",
        mini_batch_size="1",
        max_retries=1,
        timeout_seconds=2.0,
        mini_batch_error_threshold=1,
        append_row_to="out",
    )
    inputs = (RunInput("data", "uri_folder", data),)
    run = await _run(frozen, frozen_arm, "hangs", task, _code(tmp_path, FLAKY_SCRIPT), inputs, probe)

    assert _status(run) == RunStatus.COMPLETED, run.error
    assert _rows(run) == ["ok-b.txt"]
    hung = [(r["Picked Count"], r["Status"]) for r in _report(run) if r["Mini-batch Id"] == "0"]
    assert hung == [("1", "RUN_TIMEOUT"), ("2", "RUN_TIMEOUT")]
    assert len((probe / "tries-hang-a.txt").read_text()) == 2
    inits = (probe / "inits").read_text().split()
    assert len(inits) == len(set(inits)) == 2


@dataclass(frozen=True)
class ThresholdCase:
    reason: str
    error_threshold: int
    mini_batch_error_threshold: int
    failure: str | None  # what the job's error names, None: Completed
    program_arguments: str = ""


THRESHOLD_CASES = [
    ThresholdCase("2 failed items, error_threshold 2: at the threshold passes", 2, -1, None),
    ThresholdCase(
        "2 failed items, error_threshold 1: one over fails", 1, -1, "failed items (2) exceeded error_threshold (1)"
    ),
    ThresholdCase("2 failed mini-batches, threshold 2: passes", -1, 2, None),
    ThresholdCase(
        "--error_threshold 1 among the program arguments, where the docs' table sets it",
        -1,
        -1,
        "failed items (2) exceeded error_threshold (1)",
        "--error_threshold 1",
    ),
    ThresholdCase(
        "2 failed mini-batches, threshold 1: fails",
        -1,
        1,
        "failed mini-batches (2) exceeded mini_batch_error_threshold (1)",
    ),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.reason) for c in THRESHOLD_CASES])
async def test_thresholds_at_the_boundary(
    frozen: RunningEmulator, frozen_arm: Arm, tmp_path: Path, probe: Path, case: ThresholdCase
) -> None:
    """run() returning fewer results than inputs counts the rest as failed items, and the mini-batch as failed
    (the documentation's table); 2 of 4 items fail, in 2 of 4 mini-batches. A threshold "higher than" which
    the job fails: at the threshold it completes, one over it fails with UserError naming the threshold (the
    emulator's wording), job_result.txt says why, and no parallel_run_step.txt is written."""
    await _cluster(frozen_arm)
    data = _folder(tmp_path, "data", {"ok-1.txt": "", "short-2.txt": "", "ok-3.txt": "", "short-4.txt": ""})
    task = ParallelTask(
        "score.py",
        "data",
        mini_batch_size="1",
        error_threshold=case.error_threshold,
        mini_batch_error_threshold=case.mini_batch_error_threshold,
        append_row_to="out",
        program_arguments=case.program_arguments,
    )
    inputs = (RunInput("data", "uri_folder", data),)
    run = await _run(frozen, frozen_arm, "thresholds", task, _code(tmp_path, FLAKY_SCRIPT), inputs, probe)

    result = (run.parallel_logs / "job_result.txt").read_text()
    if case.failure is None:
        assert _status(run) == RunStatus.COMPLETED, run.error
        assert _rows(run) == ["ok-1.txt", "ok-3.txt"]
        assert "2 mini-batches and 2 items failed" in result
        return
    assert _status(run) == RunStatus.FAILED
    assert run.error is not None
    assert run.error["code"] == "UserError"
    assert case.failure in run.error["message"]
    assert result.startswith("Failed: ")
    assert case.failure in result
    assert not (run.named_outputs / "out" / "parallel_run_step.txt").exists()


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# Each file's mini-batch waits for $PROBE/go-<file name> before it returns the name: the test releases them one by one.
STEP_SCRIPT = script(
    """
    import os, pathlib, time

    probe = pathlib.Path(os.environ["PROBE"])

    def run(mini_batch):
        for path in mini_batch:
            while not (probe / f"go-{os.path.basename(path)}").exists():
                time.sleep(0.02)
        return [os.path.basename(path) for path in mini_batch]
    """
)


async def test_progress_is_handed_out_while_the_job_runs_and_the_last_is_the_final_report(
    frozen: RunningEmulator, frozen_arm: Arm, tmp_path: Path, probe: Path
) -> None:
    """While the job runs, the progress overview and the job report grow as mini-batches settle and go to the
    run's ``progress`` hook (what ``ml/jobs.py`` uploads): "Troubleshooting ParallelRunStep" (How to check job
    progress?: the count of scheduled/processed mini-batches in ``job_progress_overview.<timestamp>.txt``; files in
    ``logs`` are uploaded and show in the portal) and the tuning guide ("a user readable text as the job is
    running"). With one of three mini-batches done: one RUN_DONE row and "1 of 3 mini-batches processed."; at the
    end the last files handed out are byte for byte the run's final report and overview."""
    await _cluster(frozen_arm)
    data = _folder(tmp_path, "data", {"a.txt": "a", "b.txt": "b", "c.txt": "c"})
    task = ParallelTask("score.py", "data", mini_batch_size="1", append_row_to="out")
    seen: list[dict[str, bytes]] = []

    async def progress(run: Run, files: dict[str, bytes]) -> None:
        seen.append(files)

    def report(files: dict[str, bytes]) -> list[dict[str, str]]:
        text = files.get("sys/job_report/processed_mini-batches.csv", b"").decode()
        return list(csv.DictReader(text.splitlines()))

    def overview(files: dict[str, bytes]) -> str:
        return b"".join(v for k, v in files.items() if k.startswith("job_progress_overview.")).decode()

    inputs = (RunInput("data", "uri_folder", data),)
    code = _code(tmp_path, STEP_SCRIPT)
    run = await _run(frozen, frozen_arm, "steps", task, code, inputs, probe, wait=False, progress=progress)
    await _eventually(lambda: seen and "3 mini-batches created (3 items)." in overview(seen[-1]), "the plan is out")
    assert report(seen[-1]) == []
    (probe / "go-a.txt").touch()
    await _eventually(lambda: len(report(seen[-1])) == 1, "the first mini-batch's row is handed out")
    assert [(r["Mini-batch Id"], r["Status"]) for r in report(seen[-1])] == [("0", "RUN_DONE")]
    assert "1 of 3 mini-batches processed." in overview(seen[-1])
    assert not run.done

    (probe / "go-b.txt").touch()
    (probe / "go-c.txt").touch()
    await _eventually(lambda: run.done, "the run ends")
    assert _status(run) == RunStatus.COMPLETED, run.error
    last = seen[-1]
    assert (
        last["sys/job_report/processed_mini-batches.csv"]
        == (run.parallel_logs / "sys" / "job_report" / "processed_mini-batches.csv").read_bytes()
    )
    assert (
        last["sys/job_report/failed_mini-batches.csv"]
        == (run.parallel_logs / "sys" / "job_report" / "failed_mini-batches.csv").read_bytes()
    )
    assert "3 of 3 mini-batches processed." in overview(last)
    assert len(report(last)) == 3


async def test_cancel_mid_run_kills_every_process(
    frozen: RunningEmulator, frozen_arm: Arm, tmp_path: Path, probe: Path
) -> None:
    """Cancel while one process is inside run() and the other waits for a mini-batch: CancelRequested, every
    worker killed, then Canceled."""
    await _cluster(frozen_arm)
    data = _folder(tmp_path, "data", {"a.txt": "a"})
    task = ParallelTask("score.py", "data", mini_batch_size="1", max_concurrency_per_instance=2)
    inputs = (RunInput("data", "uri_folder", data),)
    code = _code(tmp_path, WAIT_SCRIPT)
    run = await _run(frozen, frozen_arm, "cancel", task, code, inputs, probe, outputs=(), wait=False)
    await _eventually(lambda: len(_names(probe, "pid-")) == 2, "both processes ran init()")
    pids = [int(name) for name in _names(probe, "pid-")]

    frozen.state.runs.cancel("cancel")
    await _eventually(lambda: run.done, "the run ends")

    assert _status(run) == RunStatus.CANCELED
    for pid in pids:
        await _eventually(lambda pid=pid: not _alive(pid), f"process {pid} is killed")  # type: ignore[misc]


async def test_a_process_that_dies_mid_batch_loses_nothing(
    frozen: RunningEmulator, frozen_arm: Arm, tmp_path: Path, probe: Path
) -> None:
    """A worker process that exits inside run(): its mini-batch goes back to the queue (a failed try, status
    PROCESS_EXITED) and a new process (its own init()) takes it; every item still gets its row."""
    await _cluster(frozen_arm)
    data = _folder(tmp_path, "data", {"exit-a.txt": "a", "ok-b.txt": "b"})
    task = ParallelTask("score.py", "data", mini_batch_size="1", max_retries=1, append_row_to="out")
    inputs = (RunInput("data", "uri_folder", data),)
    run = await _run(frozen, frozen_arm, "crash", task, _code(tmp_path, CRASH_SCRIPT), inputs, probe)

    assert _status(run) == RunStatus.COMPLETED, run.error
    assert _rows(run) == ["exit-a.txt", "ok-b.txt"]
    picks = sorted((r["Mini-batch Id"], r["Picked Count"], r["Status"]) for r in _report(run))
    assert picks == [("0", "1", "PROCESS_EXITED"), ("0", "2", "RUN_DONE"), ("1", "1", "RUN_DONE")]
    assert len(set((probe / "inits").read_text().split())) == 2


async def test_a_failing_init_fails_the_job_naming_it(
    frozen: RunningEmulator, frozen_arm: Arm, tmp_path: Path, probe: Path
) -> None:
    """init() raising fails the job (the emulator's choice: no mini-batch can run) with a UserError naming
    init() and the process, its traceback in logs/user/error/<ip>/process000.txt."""
    await _cluster(frozen_arm)
    data = _folder(tmp_path, "data", {"a.txt": "a"})
    request = RunRequest(
        "bad-init",
        CPU,
        "",
        environment_variables={"PROBE": str(probe), "BAD_INIT": "1"},
        code=_code(tmp_path, CRASH_SCRIPT),
        inputs=(RunInput("data", "uri_folder", data),),
        parallel=ParallelTask("score.py", "data"),
    )
    run = frozen.state.runs.submit(request)
    await frozen_arm.advance(90)
    await _eventually(lambda: run.done, "the run ends")

    assert _status(run) == RunStatus.FAILED
    assert run.error is not None
    assert f"init() failed in {FIRST_NODE}/process000: no model here" in run.error["message"]
    trace = (run.parallel_logs / "user" / "error" / FIRST_NODE / "process000.txt").read_text()
    assert "ValueError: no model here" in trace


async def test_limits_timeout_cancels_a_parallel_run(
    frozen: RunningEmulator, frozen_arm: Arm, tmp_path: Path, probe: Path
) -> None:
    """limits.timeout bounds the whole parallel run as it does a command job (azure-ai-ml's CommandJobLimits:
    "after which the job will be cancelled"): every worker is killed, the run ends Canceled with JobTimeout."""
    await _cluster(frozen_arm)
    data = _folder(tmp_path, "data", {"a.txt": "a"})
    task = ParallelTask("score.py", "data", max_concurrency_per_instance=2)
    request = RunRequest(
        "too-long",
        CPU,
        "",
        environment_variables={"PROBE": str(probe)},
        code=_code(tmp_path, WAIT_SCRIPT),
        inputs=(RunInput("data", "uri_folder", data),),
        parallel=task,
        timeout_seconds=1.0,
    )
    run = frozen.state.runs.submit(request)
    await frozen_arm.advance(90)
    await _eventually(lambda: run.done, "the run ends")

    assert _status(run) == RunStatus.CANCELED
    assert run.error is not None
    assert run.error["code"] == "JobTimeout"
    for pid in [int(name) for name in _names(probe, "pid-")]:
        await _eventually(lambda pid=pid: not _alive(pid), f"process {pid} is killed")  # type: ignore[misc]


async def test_what_azure_ml_refuses_at_submission(frozen: RunningEmulator, frozen_arm: Arm, tmp_path: Path) -> None:
    """input_data that is no data input, append_row_to that is no output, a file count that is no number."""
    await _cluster(frozen_arm)
    data = (RunInput("data", "uri_folder", _folder(tmp_path, "data", {"a.txt": "a"})),)
    cases = [
        (ParallelTask("score.py", "missing"), "input_data 'missing'"),
        (ParallelTask("score.py", "data", append_row_to="nowhere"), "append_row_to 'nowhere'"),
        (ParallelTask("score.py", "data", mini_batch_size="10 MB"), "number of files"),
    ]
    for number, (task, words) in enumerate(cases):
        with pytest.raises(SubmitError) as refused:
            frozen.state.runs.submit(RunRequest(f"bad-{number}", CPU, "", inputs=data, parallel=task))
        assert refused.value.status == 400
        assert words in refused.value.message


@dataclass(frozen=True)
class SizeCase:
    reason: str
    text: str
    size: int | None  # None: refused


SIZE_CASES = [
    SizeCase("a bare number is bytes", "100", 100),
    SizeCase("KB with a space", "1024 KB", 1 << 20),
    SizeCase("MB without", "10MB", 10 << 20),
    SizeCase("lower case, no B", "500kb", 500 << 10),
    SizeCase("GB", "1GB", 1 << 30),
    SizeCase("zero is no size", "0", None),
    SizeCase("an unknown unit", "10 TB", None),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.reason) for c in SIZE_CASES])
def test_tabular_mini_batch_sizes(case: SizeCase) -> None:
    """azure-ai-ml: "Example values are 1024, 1024KB, 10MB, and 1GB"; the docs' sample uses "500kb"."""
    if case.size is None:
        with pytest.raises(PlanError):
            size_bytes(case.text)
    else:
        assert size_bytes(case.text) == case.size


def test_file_partition_keys_are_key_value_folders(tmp_path: Path) -> None:
    """File inputs partition by ``key=value`` folders in the path (the emulator's choice, as amlops' planner);
    a file without the key is refused."""
    files = _folder(tmp_path, "files", {f"region={r}/day={d}/{i}.txt": "x" for r in "ab" for d in "12" for i in "01"})
    task = ParallelTask("s.py", "d", mini_batch_size="1", partition_keys=("region",))
    assert [b.files for b in plan(task, "uri_folder", files).batches] == [
        tuple(f"region={r}/day={d}/{i}.txt" for d in "12" for i in "01") for r in "ab"
    ]
    (files / "loose.txt").write_text("x")
    with pytest.raises(PlanError, match="no partition key 'region'"):
        plan(task, "uri_folder", files)


def test_the_default_mini_batch_size_is_10_files_and_1_mb(tmp_path: Path) -> None:
    """azure-ai-ml: "default value is 10 files for FileDataset and 1MB for TabularDataset"."""
    files = _folder(tmp_path, "files", {f"{i:02d}.txt": "x" for i in range(21)})
    assert [b.items for b in plan(ParallelTask("s.py", "d"), "uri_folder", files).batches] == [10, 10, 1]
    row = "1," + "x" * 1021 + "\n"  # 1024 bytes
    table = _folder(
        tmp_path,
        "table",
        {
            "MLTable": "paths:\n  - file: ./t.csv\ntransformations:\n  - read_delimited: {}\n",
            "t.csv": "a,b\n" + row * 1100,
        },
    )
    assert [b.items for b in plan(ParallelTask("s.py", "d"), "mltable", table).batches] == [1024, 76]


# ----------------------------------------------------------------------------------------------- conformance


@dataclass(frozen=True)
class ConformanceCase:
    reason: str
    entry_script: str
    files: dict[str, str]
    tabular: bool = False


CONFORMANCE_CASES = [
    ConformanceCase(
        "strings as they are",
        "def run(mini_batch):\n    return [open(p).read().strip() + ': ok' for p in mini_batch]\n",
        {"a.txt": "alpha", "b.txt": "beta", "c.txt": "gamma"},
    ),
    ConformanceCase(
        "lists, tuples, dicts, numbers and None",
        "import os\n\ndef run(mini_batch):\n    out = []\n    for p in mini_batch:\n"
        "        n = os.path.basename(p)\n        out += [[n, 1.5, None], (n, True), {'f': n, 'k': 2}, 7]\n"
        "    return out[: len(mini_batch)]\n",
        {"a.txt": "a", "b.txt": "b", "c.txt": "c", "d.txt": "d"},
    ),
    ConformanceCase(
        "tabular rows returned as they came",
        "def run(mini_batch):\n    return list(mini_batch)\n",
        {"a.csv": "id,name,score\n1,x,0.5\n2,y,0.25\n", "b.csv": "id,name,score\n3,z,1\n"},
        tabular=True,
    ),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.reason) for c in CONFORMANCE_CASES])
async def test_rows_conform_to_amlops_driver(
    frozen: RunningEmulator,
    frozen_arm: Arm,
    parallel: ParallelRun,
    tmp_path: Path,
    probe: Path,
    case: ConformanceCase,
) -> None:
    """The same entry script and data through amlops' ParallelJob driver (Batch emulator, Azurite: the
    tests/emulator/paralleljob harness, as the operator runs it) and through the emulator's runtime: identical
    parallel_run_step.txt rows."""
    uploads = {name: text.encode() for name, text in case.files.items()}
    if case.tabular:
        uploads["MLTable"] = b"paths: []"
    blobs = await parallel.upload_inputs(uploads)
    spec = PlanSpec("tabular", "1MB") if case.tabular else PlanSpec("files", "2")
    amlops = (await parallel.run(blobs, case.entry_script, spec)).output.splitlines()

    await _cluster(frozen_arm)
    if case.tabular:
        mltable = "paths:\n  - pattern: ./*.csv\ntransformations:\n  - read_delimited: {}\n"
        data = _folder(tmp_path, "data", {**case.files, "MLTable": mltable})
        inputs = (RunInput("data", "mltable", data),)
    else:
        inputs = (RunInput("data", "uri_folder", _folder(tmp_path, "data", case.files)),)
    task = ParallelTask("score.py", "data", mini_batch_size=None if case.tabular else "2", append_row_to="out")
    run = await _run(frozen, frozen_arm, "conformance", task, _code(tmp_path, case.entry_script), inputs, probe)

    assert _status(run) == RunStatus.COMPLETED, run.error
    assert amlops, "the driver wrote rows"
    assert _rows(run) == amlops
