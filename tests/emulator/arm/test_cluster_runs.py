"""Runs on an AmlCompute: queued runs drive the autoscaler, nodes really run their processes
(``amlops_emulator.ml.execution``), stepped on a frozen virtual clock (allocation 30 s, preparation 60 s).

Evidence: listNodes.json (azure-rest-api-specs, MachineLearningServices 2024-04-01 examples: a running node
carries ``"runId"``, an idle one none); azure-ai-ml 1.35's ``JobStatus`` (``Queued``: "waiting for all required
nodes to be ready", ``Finalizing``: output collection) and ``CommandJobLimits.timeout`` ("after which the job
will be cancelled"); Azure ML's "Distributed GPU training guide" for the MPI and PyTorch variables; azure-ai-ml's
``COMMON_RUNTIME_STREAM_LOG_PATTERN`` and stream fixtures for the ``user_logs/std_log*.txt`` names; hi-ml's
"Using Cheap Low Priority VMs" for a preempted job being re-started.

User processes run in real time: tests wait on the run's status with a deadline, never on a sleep.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from amlops_emulator.ml.execution import Run, RunInput, RunRequest, RunStatus, SubmitError
from amlops_emulator.server import EmulatorConfig, RunningEmulator, run_emulator
from tests.support.rank_scripts import MPI_ENV, RENDEZVOUS
from tests.support.waiting import eventually

from .conftest import BASE, RG, WS, Arm, aml_body, client_for, session_for

pytestmark = pytest.mark.emulator

CPU = f"{BASE}/computes/cpu"
PYTHON = sys.executable
WITHIN = 60.0  # real seconds a condition may take on a loaded machine

# Writes its pid (and one line per attempt) to the directory in $PROBE, then waits until $PROBE/go (or go{RANK})
# exists and exits with $EXIT_CODE_{RANK} (default 0).
WAIT_FOR_GO = """
import os, pathlib, sys, time
probe = pathlib.Path(os.environ["PROBE"])
rank = os.environ.get("RANK", "0")
# Written whole, then renamed: a reader that sees the file sees the pid (never an empty file mid-write).
(probe / f".pid{rank}").write_text(str(os.getpid()))
os.replace(probe / f".pid{rank}", probe / f"pid{rank}")
with (probe / "attempts").open("a") as attempts:
    attempts.write("attempt\\n")
while not (probe / "go").exists() and not (probe / f"go{rank}").exists():
    time.sleep(0.02)
pathlib.Path("outputs", "done.txt").write_text("done")
print("released")
sys.exit(int(os.environ.get("EXIT_CODE_" + rank, "0")))
"""


@pytest.fixture
def code(tmp_path: Path) -> Path:
    folder = tmp_path / "code"
    folder.mkdir()
    (folder / "rendezvous.py").write_text(RENDEZVOUS)
    (folder / "mpi_env.py").write_text(MPI_ENV)
    (folder / "wait_for_go.py").write_text(WAIT_FOR_GO)
    return folder


@pytest.fixture
def probe(tmp_path: Path) -> Path:
    folder = tmp_path / "probe"
    folder.mkdir()
    return folder


async def _eventually(condition: Callable[[], Any], what: str, within: float = WITHIN) -> None:
    await eventually(condition, what, within)


async def _finished(run: Run) -> Run:
    await _eventually(lambda: run.done, f"run {run.run_id} ends (now {run.status})")
    return run


async def _cluster(arm: Arm, **knobs: Any) -> None:
    status, _, _ = await arm.call("PUT", CPU, aml_body(**knobs))
    assert status == 201
    await arm.advance(30)  # provisioned


async def _nodes(running: RunningEmulator) -> list[tuple[str, str | None]]:
    """(nodeState, runId) of every listed node, through the real SDK's listNodes."""
    async with client_for(running) as client:
        nodes = [n async for n in client.machine_learning_compute.list_nodes(RG, WS, "cpu")]
    return sorted((str(n.node_state), n.run_id) for n in nodes)


async def _aml(arm: Arm) -> dict[str, Any]:
    status, _, body = await arm.call("GET", CPU)
    assert status == 200
    props: dict[str, Any] = body["properties"]["properties"]
    return props


def _submit(running: RunningEmulator, run_id: str, command: str, **kwargs: Any) -> Run:
    return running.state.runs.submit(RunRequest(run_id, CPU, command, **kwargs))


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie awaiting its reaper does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def _gone(pid: int) -> None:
    """The process ``pid`` is dead. SIGKILL is delivered asynchronously, and a process the shell started (a
    grandchild of the emulator, reparented when the shell dies) is reaped by init, not by the emulator's wait."""
    await _eventually(lambda: not _alive(pid), f"process {pid} dies after the kill")


def _status(run: Run) -> RunStatus:
    """The run's status now (a call, so that a check after an await is not narrowed by the one before)."""
    return run.status


def _statuses(run: Run) -> list[str]:
    return [str(status) for status, _ in run.history]


async def test_pytorch_two_nodes_two_processes_rendezvous_over_master_addr(
    frozen: RunningEmulator, frozen_arm: Arm, code: Path
) -> None:
    """2 nodes x 2 processes, PyTorch: RANK 0..3, WORLD_SIZE 4, LOCAL_RANK and NODE_RANK per node, and every rank
    reaches rank 0 over MASTER_ADDR:MASTER_PORT. One std_log_process_{rank}.txt per process, outputs/ of both
    nodes collected, statuses in Azure ML's order (Queued while the nodes come up, Finalizing while collecting)."""
    await _cluster(frozen_arm, vm_size="Standard_DS2_v2", max_nodes=2)
    run = _submit(
        frozen,
        "pytorch-2x2",
        f"{PYTHON} rendezvous.py",
        instance_count=2,
        distribution={"distributionType": "PyTorch", "processCountPerInstance": 2},
        code=code,
    )
    assert _status(run) == RunStatus.QUEUED
    assert (await _aml(frozen_arm))["targetNodeCount"] == 2
    await frozen_arm.advance(90)
    await _finished(run)
    assert _status(run) == RunStatus.COMPLETED, run.error
    assert _statuses(run) == ["NotStarted", "Queued", "Preparing", "Running", "Finalizing", "Completed"]
    assert run.start_time is not None
    assert run.end_time is not None
    seen = [json.loads((run.outputs / f"rank{rank}.json").read_text()) for rank in range(4)]
    assert [(s["RANK"], s["WORLD_SIZE"], s["LOCAL_RANK"], s["NODE_RANK"]) for s in seen] == [
        ("0", "4", "0", "0"),
        ("1", "4", "1", "0"),
        ("2", "4", "0", "1"),
        ("3", "4", "1", "1"),
    ]
    assert seen[0]["peers"] == [1, 2, 3]
    assert len({(s["MASTER_ADDR"], s["MASTER_PORT"]) for s in seen}) == 1
    logs = sorted(p.name for p in run.logs.iterdir())
    assert logs == [f"std_log_process_{rank}.txt" for rank in range(4)]
    assert "rank 3 of 4 done" in (run.logs / "std_log_process_3.txt").read_text()
    assert await _nodes(frozen) == [("idle", None), ("idle", None)]


async def test_mpi_environment_per_process(frozen: RunningEmulator, frozen_arm: Arm, code: Path) -> None:
    """Mpi, 2 nodes x 2 processes: Open MPI's OMPI_COMM_WORLD_RANK/SIZE/LOCAL_RANK/LOCAL_SIZE, Azure ML's
    AZ_BATCHAI_MPI_MASTER_NODE and, on a multi-node job, AZ_BATCH_MASTER_NODE (address:port)."""
    await _cluster(frozen_arm, vm_size="Standard_DS2_v2", max_nodes=2)
    run = _submit(
        frozen,
        "mpi-2x2",
        f"{PYTHON} mpi_env.py",
        instance_count=2,
        distribution={"distributionType": "Mpi", "processCountPerInstance": 2},
        code=code,
    )
    await frozen_arm.advance(90)
    await _finished(run)
    assert _status(run) == RunStatus.COMPLETED, run.error
    seen = [json.loads((run.outputs / f"rank{rank}.json").read_text()) for rank in range(4)]
    assert [(s["OMPI_COMM_WORLD_RANK"], s["OMPI_COMM_WORLD_LOCAL_RANK"]) for s in seen] == [
        ("0", "0"),
        ("1", "1"),
        ("2", "0"),
        ("3", "1"),
    ]
    assert {s["OMPI_COMM_WORLD_SIZE"] for s in seen} == {"4"}
    assert {s["OMPI_COMM_WORLD_LOCAL_SIZE"] for s in seen} == {"2"}
    master = {s["AZ_BATCHAI_MPI_MASTER_NODE"] for s in seen}
    assert len(master) == 1
    assert {s["AZ_BATCH_MASTER_NODE"].split(":")[0] for s in seen} == master


async def test_a_failing_process_fails_the_run_with_azure_ml_user_error(
    frozen: RunningEmulator, frozen_arm: Arm, code: Path, probe: Path
) -> None:
    """One process of two exits 3: the run fails at once (the other, still waiting, is killed), with code
    UserError and the common runtime's "Execution failed. User process ... exited with status code 3. Please
    check log file ..." naming the failing process's log and quoting it."""
    await _cluster(frozen_arm, vm_size="Standard_DS2_v2", max_nodes=1)
    run = _submit(
        frozen,
        "failing",
        f"{PYTHON} wait_for_go.py",
        distribution={"distributionType": "PyTorch", "processCountPerInstance": 2},
        environment_variables={"PROBE": str(probe), "EXIT_CODE_1": "3"},
        code=code,
    )
    await frozen_arm.advance(90)
    await _eventually(lambda: (probe / "pid0").exists() and (probe / "pid1").exists(), "both processes start")
    (probe / "go1").touch()  # rank 1 goes on to its exit code 3; rank 0 waits for a file never made
    await _finished(run)
    assert _status(run) == RunStatus.FAILED
    assert run.error is not None
    assert run.error["code"] == "UserError"
    message = run.error["message"]
    assert message.startswith(f"Execution failed. User process '{Path(PYTHON).name}' exited with status code 3.")
    assert "Please check log file 'user_logs/std_log_process_1.txt' for error details." in message
    assert message.endswith("released")  # the log's tail
    assert run.exit_codes["user_logs/std_log_process_1.txt"] == 3
    await _gone(int((probe / "pid0").read_text()))
    assert await _nodes(frozen) == [("idle", None)]


async def test_a_single_process_writes_std_log_and_fails_with_its_exit_code(
    frozen: RunningEmulator, frozen_arm: Arm
) -> None:
    """No distribution, one instance: one process, its output in user_logs/std_log.txt."""
    await _cluster(frozen_arm, vm_size="Standard_DS2_v2", max_nodes=1)
    run = _submit(frozen, "single", f"{PYTHON} -c \"print('boom'); raise SystemExit(2)\"")
    await frozen_arm.advance(90)
    await _finished(run)
    assert _status(run) == RunStatus.FAILED
    assert run.error is not None
    assert "exited with status code 2. Please check log file 'user_logs/std_log.txt'" in run.error["message"]
    assert (run.logs / "std_log.txt").read_text().strip() == "boom"


async def test_timeout_kills_the_processes_and_cancels_the_run(
    frozen: RunningEmulator, frozen_arm: Arm, probe: Path
) -> None:
    """limits.timeout (real seconds): the processes are killed and the run ends Canceled, as azure-ai-ml's
    CommandJobLimits says ("after which the job will be cancelled"); its nodes go idle."""
    await _cluster(frozen_arm, vm_size="Standard_DS2_v2", max_nodes=1)
    # The shell records its pid first thing and becomes the sleep (exec): one process, killed by the timeout.
    command = f'echo $$ > "{probe}/.pid0" && mv "{probe}/.pid0" "{probe}/pid0"; exec sleep 600'
    run = _submit(frozen, "too-long", command, timeout_seconds=1.0)
    await frozen_arm.advance(90)
    await _finished(run)
    assert _status(run) == RunStatus.CANCELED
    assert run.error is not None
    assert run.error["code"] == "JobTimeout"
    assert run.exit_codes == {"user_logs/std_log.txt": -9}  # SIGKILL
    await _gone(int((probe / "pid0").read_text()))
    assert await _nodes(frozen) == [("idle", None)]


async def test_cancel_kills_a_running_run_and_drops_a_queued_one(
    frozen: RunningEmulator, frozen_arm: Arm, code: Path, probe: Path
) -> None:
    """Cancel: CancelRequested, then Canceled once the processes are killed; a queued run leaves the queue
    (what it asked the autoscaler for goes with it)."""
    await _cluster(frozen_arm, vm_size="Standard_DS2_v2", max_nodes=1)
    env = {"PROBE": str(probe)}
    running = _submit(frozen, "to-cancel", f"{PYTHON} wait_for_go.py", environment_variables=env, code=code)
    queued = _submit(frozen, "queued", f"{PYTHON} wait_for_go.py", environment_variables=env, code=code)
    await frozen_arm.advance(90)
    await _eventually(lambda: (probe / "pid0").exists(), "the first run's process starts")
    assert _status(queued) == RunStatus.QUEUED
    assert await _nodes(frozen) == [("running", "to-cancel")]
    frozen.state.runs.cancel("queued")
    assert _statuses(queued)[-2:] == ["CancelRequested", "Canceled"]
    frozen.state.runs.cancel("to-cancel")
    assert _status(running) == RunStatus.CANCEL_REQUESTED
    await _finished(running)
    assert _status(running) == RunStatus.CANCELED
    assert running.error is None
    assert running.exit_codes == {"user_logs/std_log.txt": -9}  # SIGKILL
    await _gone(int((probe / "pid0").read_text()))
    assert await _nodes(frozen) == [("idle", None)]
    assert (await _aml(frozen_arm))["targetNodeCount"] == 1


async def test_a_queued_run_scales_the_cluster_up_and_idle_nodes_leave_after_the_idle_time(
    frozen: RunningEmulator, frozen_arm: Arm, code: Path, probe: Path
) -> None:
    """Scale-up for a queued run, seen through the SDK's listNodes: nothing listed while allocating, preparing,
    then running with the run's id as runId (listNodes.json); idle once it completed, leaving after
    nodeIdleTimeBeforeScaleDown, gone 30 s later."""
    await _cluster(frozen_arm, vm_size="Standard_DS2_v2", max_nodes=2, idle="PT2M")
    assert await _nodes(frozen) == []
    run = _submit(
        frozen, "scale-me", f"{PYTHON} wait_for_go.py", environment_variables={"PROBE": str(probe)}, code=code
    )
    aml = await _aml(frozen_arm)
    assert (aml["allocationState"], aml["currentNodeCount"], aml["targetNodeCount"]) == ("Resizing", 0, 1)
    await frozen_arm.advance(30)
    assert await _nodes(frozen) == [("preparing", None)]
    await frozen_arm.advance(60)
    assert await _nodes(frozen) == [("running", "scale-me")]
    await _eventually(lambda: (probe / "pid0").exists(), "the process starts")
    assert _status(run) == RunStatus.RUNNING
    (probe / "go").touch()
    await _finished(run)
    assert _status(run) == RunStatus.COMPLETED, run.error
    assert (run.outputs / "done.txt").read_text() == "done"
    assert await _nodes(frozen) == [("idle", None)]
    await frozen_arm.advance(119)
    assert await _nodes(frozen) == [("idle", None)]
    await frozen_arm.advance(1)
    assert await _nodes(frozen) == [("leaving", None)]
    await frozen_arm.advance(30)
    assert await _nodes(frozen) == []
    assert (await _aml(frozen_arm))["allocationState"] == "Steady"


async def test_runs_wait_in_order_for_a_full_set_of_nodes(frozen: RunningEmulator, frozen_arm: Arm) -> None:
    """Gang scheduling, first in first out: with maxNodeCount 2, a 2-node run queued behind a 1-node one waits
    until both nodes are free; a 3-node run is refused at submission (larger than maxNodeCount)."""
    await _cluster(frozen_arm, vm_size="Standard_DS2_v2", max_nodes=2)
    with pytest.raises(SubmitError) as refused:
        _submit(frozen, "too-big", "true", instance_count=3)
    assert (refused.value.status, refused.value.code) == (400, "UserError")
    with pytest.raises(SubmitError) as unknown:
        frozen.state.runs.submit(RunRequest("nowhere", f"{BASE}/computes/missing", "true"))
    assert unknown.value.status == 404
    with pytest.raises(SubmitError) as bad:
        _submit(frozen, "bad", "true", distribution={"distributionType": "Ray"})
    assert bad.value.status == 400
    first = _submit(frozen, "first", f"{PYTHON} -c 'import time; time.sleep(0)'")
    second = _submit(frozen, "second", "true", instance_count=2)
    assert (await _aml(frozen_arm))["targetNodeCount"] == 2  # what both need, within maxNodeCount
    await frozen_arm.advance(90)
    await _finished(first)
    await _finished(second)
    assert (first.status, second.status) == (RunStatus.COMPLETED, RunStatus.COMPLETED)
    assert first.start_time is not None
    assert second.start_time is not None
    second_running = next(t for s, t in second.history if s == RunStatus.RUNNING)
    first_ended = first.end_time
    assert first_ended is not None
    assert second_running >= first_ended


async def test_preemption_requeues_the_run_which_restarts_on_a_new_node(
    frozen: RunningEmulator, frozen_arm: Arm, code: Path, probe: Path
) -> None:
    """A low-priority node running a run is preempted: the processes are killed, the run goes back to Queued
    (requeue_count 1), a replacement node comes up and the run starts again from scratch on it."""
    await _cluster(frozen_arm, vm_size="Standard_DS2_v2", max_nodes=1, priority="LowPriority")
    run = _submit(
        frozen, "preempt-me", f"{PYTHON} wait_for_go.py", environment_variables={"PROBE": str(probe)}, code=code
    )
    await frozen_arm.advance(90)
    await _eventually(lambda: (probe / "pid0").exists(), "the first attempt starts")
    first_pid = int((probe / "pid0").read_text())
    [(_, first_node)] = [(s, n) for s, n in await _nodes(frozen)]
    assert first_node == "preempt-me"
    await frozen_arm.control("POST", "/arm/preempt", {"computeId": CPU, "count": 1})
    await _eventually(lambda: run.status == RunStatus.QUEUED and run.requeue_count == 1, "the run is requeued")
    await _eventually(lambda: not _alive(first_pid), "the first attempt's process is killed")
    aml = await _aml(frozen_arm)
    assert (aml["nodeStateCounts"]["preemptedNodeCount"], aml["targetNodeCount"]) == (1, 1)
    await frozen_arm.advance(90)
    assert await _nodes(frozen) == [("running", "preempt-me")]
    await _eventually(lambda: (probe / "attempts").read_text().count("attempt") == 2, "the second attempt starts")
    (probe / "go").touch()
    await _finished(run)
    assert _status(run) == RunStatus.COMPLETED, run.error
    assert _statuses(run) == [
        "NotStarted",
        "Queued",
        "Preparing",
        "Running",
        "Queued",
        "Preparing",
        "Running",
        "Finalizing",
        "Completed",
    ]


async def test_data_inputs_are_copied_to_every_node_and_removed_when_the_run_ends(
    frozen: RunningEmulator, frozen_arm: Arm
) -> None:
    """A folder input and a file input, fetched once under the executor's ``input_root`` (as ``ml/inputs.py``
    does): each of the two nodes finds its own copy at ``.../cap/data-capability/wd/INPUT_{name}`` (a file input
    the file inside it), through ``${{inputs.x}}`` and ``AZURE_ML_INPUT_x``; the fetched copy is gone once the run
    ended."""
    await _cluster(frozen_arm, max_nodes=2)
    fetched = frozen.state.runs.input_root / "with-inputs"
    (fetched / "rows").mkdir(parents=True)
    (fetched / "rows" / "a.txt").write_text("row\n")
    (fetched / "model").mkdir()
    (fetched / "model" / "m.bin").write_text("weights\n")
    inputs = (
        RunInput("rows", "uri_folder", fetched / "rows"),
        RunInput("model", "uri_file", fetched / "model" / "m.bin"),
    )
    command = (
        "cat ${{inputs.rows}}/a.txt ${{inputs.model}} > outputs/seen-$NODE_RANK.txt && "
        'test "$AZURE_ML_INPUT_model" = ${{inputs.model}} && echo ${{inputs.rows}} >> outputs/seen-$NODE_RANK.txt'
    )
    pytorch = {"distributionType": "PyTorch"}
    run = _submit(frozen, "with-inputs", command, inputs=inputs, instance_count=2, distribution=pytorch)
    await frozen_arm.advance(90)
    await _finished(run)

    assert _status(run) == RunStatus.COMPLETED, run.error
    seen = [(run.outputs / f"seen-{rank}.txt").read_text().splitlines() for rank in range(2)]
    assert [lines[:2] for lines in seen] == [["row", "weights"]] * 2
    assert all(lines[2].endswith("/cap/data-capability/wd/INPUT_rows") for lines in seen)
    assert seen[0][2] != seen[1][2]  # each node its own copy
    assert not fetched.exists()


async def test_an_input_with_nothing_at_its_path_fails_the_run_as_it_prepares(
    frozen: RunningEmulator, frozen_arm: Arm
) -> None:
    """Azure ML's data capability cannot mount a path that holds nothing: the run fails while Preparing, with
    ``ScriptExecution.StreamAccess.NotFound`` (learn.microsoft.com ``how-to-troubleshoot-data-access``) for the
    mount target ``UriMountSession:INPUT_{name}``; no process starts."""
    await _cluster(frozen_arm, max_nodes=1)
    missing = RunInput("gone", "uri_folder", frozen.state.runs.input_root / "no-data" / "gone", "azureml://x/")
    run = _submit(frozen, "no-data", "echo ran > outputs/ran.txt", inputs=(missing,))
    await frozen_arm.advance(90)
    await _finished(run)

    assert _statuses(run) == ["NotStarted", "Queued", "Preparing", "Failed"]
    assert run.error is not None
    assert run.error["code"] == "UserError"
    assert run.error["innerError"]["code"] == "ScriptExecution.StreamAccess.NotFound"
    assert run.error["target"] == "UriMountSession:INPUT_gone"
    assert not (run.outputs / "ran.txt").exists()


async def test_stopping_the_emulator_kills_the_processes_of_running_runs(
    tmp_path: Path, code: Path, probe: Path
) -> None:
    """No process outlives the emulator: closing it kills and reaps what its runs started."""
    config = EmulatorConfig(state_dir=tmp_path / "emulator", serve_batch=False, speed=0.0)
    async with run_emulator(config) as running, session_for(running) as session:
        arm = Arm(running, session)
        await _cluster(arm, vm_size="Standard_DS2_v2", max_nodes=1)
        _submit(
            running, "left-running", f"{PYTHON} wait_for_go.py", environment_variables={"PROBE": str(probe)}, code=code
        )
        await arm.advance(90)
        await _eventually(lambda: (probe / "pid0").exists(), "the process starts")
    await _gone(int((probe / "pid0").read_text()))
