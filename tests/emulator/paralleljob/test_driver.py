"""The ParallelJob data plane on Azurite + the Batch emulator: plan, driver tasks, aggregation."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from azure.batch import models

from amlops.external.paralleljob_output import OUTPUT_FILE, aggregate
from amlops.external.paralleljob_plan import PlanSpec
from amlops.runtime import driver
from tests.emulator.paralleljob.conftest import ParallelRun, script

pytestmark = pytest.mark.emulator

FILE_SCRIPT = script(
    """
    import os
    import sys

    state = {}

    def init():
        state["suffix"] = sys.argv[sys.argv.index("--suffix") + 1]
        state["inits"] = state.get("inits", 0) + 1

    def run(mini_batch):
        assert state["inits"] == 1
        return [
            f"{os.path.basename(path)}: {open(path).read().strip().upper()}{state['suffix']}"
            for path in mini_batch
        ]
    """
)


async def test_file_inputs_give_one_row_per_item_in_order_exactly_once(parallel: ParallelRun) -> None:
    words = [f"word{i:02d}" for i in range(12)]
    inputs = await parallel.upload_inputs({f"sub/item-{i:02d}.txt": f"{w}\n".encode() for i, w in enumerate(words)})

    outcome = await parallel.run(inputs, FILE_SCRIPT, PlanSpec("files", "5"), program_arguments="--suffix '!'")

    assert outcome.plan.count == 3
    assert outcome.output.splitlines() == [f"item-{i:02d}.txt: {w.upper()}!" for i, w in enumerate(words)]
    assert (outcome.totals.processed_items, outcome.totals.failed_items) == (12, 0)
    assert outcome.totals.failed_indexes == ""
    assert outcome.totals.output_written
    assert {t.execution_info.exit_code for t in outcome.tasks.values() if t.execution_info} == {0}

    again = await aggregate(parallel.store, outcome.results, outcome.output_folder, 3)

    assert not again.output_written
    assert again.processed_items == 12
    assert (await parallel.store.read(outcome.output_folder, OUTPUT_FILE) or b"").decode() == (outcome.output)


FAILING_SCRIPT = script(
    """
    import time

    def run(mini_batch):
        rows = []
        for path in mini_batch:
            word = open(path).read().strip()
            if word == "boom":
                raise ValueError("boom on purpose")
            if word == "slow":
                try:
                    time.sleep(60)
                except Exception:
                    pass  # a broad except must not swallow the driver's timeout
            if word != "skip":
                rows.append(word)
        return rows
    """
)


async def test_item_failures_exceptions_and_timeouts_are_counted_and_retried(parallel: ParallelRun) -> None:
    words = ["ok1", "skip", "boom", "slow", "ok2"]
    inputs = await parallel.upload_inputs({f"{i}.txt": w.encode() for i, w in enumerate(words)})

    outcome = await parallel.run(inputs, FAILING_SCRIPT, PlanSpec("files", "1"), run_timeout=1, max_retries=1)

    assert outcome.output.splitlines() == ["ok1", "ok2"]
    totals = outcome.totals
    assert (totals.processed_items, totals.failed_items) == (2, 3)
    # A run() that returns fewer results than items fails its mini-batch (Azure ML, "How to use parallel job in
    # pipeline": mini_batch_error_threshold counts it; the emulator's runtime, amlops_emulator/ml/parallel.py).
    assert totals.failed_mini_batches == (1, 2, 3)
    assert totals.failed_indexes == "1-3"
    assert totals.attempts == {2: 2, 3: 2}
    info = {task_id: task.execution_info for task_id, task in outcome.tasks.items()}
    assert all(i is not None for i in info.values())
    assert {k: (i.exit_code, i.retry_count) for k, i in info.items() if i} == {
        "mb-0": (0, 0),
        "mb-1": (0, 0),  # run() returned, one item short: a failed mini-batch, but not a failed (retried) task
        "mb-2": (1, 1),
        "mb-3": (3, 1),
        "mb-4": (0, 0),
    }
    summaries = {
        i: json.loads(await parallel.store.read(outcome.results, f"{i}.summary.json") or b"{}") for i in (1, 2, 3)
    }
    assert (summaries[1]["processed"], summaries[1]["failed"], summaries[1]["error"]) == (0, 1, None)
    assert summaries[2]["error"]["type"] == "ValueError"
    assert "boom on purpose" in summaries[2]["error"]["traceback"]
    assert summaries[3]["error"]["type"] == "RunTimeout"
    assert summaries[3]["durationSeconds"] < 30


TABULAR_SCRIPT = script(
    """
    def run(mini_batch):
        # Without pandas (python3 -S), rows are dicts keyed by the CSV header.
        assert isinstance(mini_batch, list)
        return [[row["id"], row["name"]] for row in mini_batch]
    """
)


async def test_tabular_csv_is_split_by_size_on_line_boundaries_with_the_header(parallel: ParallelRun) -> None:
    first = "id,name\n" + "".join(f"{i},name-{i:03d}\n" for i in range(40))
    second = "id,name\n" + "".join(f"{i},other-{i}\n" for i in range(40, 45))
    inputs = await parallel.upload_inputs({"a.csv": first.encode(), "b.csv": second.encode(), "MLTable": b"paths: []"})

    outcome = await parallel.run(inputs, TABULAR_SCRIPT, PlanSpec("tabular", "150"))

    assert outcome.plan.count == 4  # 40 * 13 + 5 * 12 bytes of rows in ~150-byte mini-batches
    expected = [f"{i} name-{i:03d}" for i in range(40)] + [f"{i} other-{i}" for i in range(40, 45)]
    assert outcome.output.splitlines() == expected
    assert (outcome.totals.processed_items, outcome.totals.failed_items) == (45, 0)


PARTITION_SCRIPT = script(
    """
    def run(mini_batch):
        return [path.split("/inputs/", 1)[1] for path in mini_batch]
    """
)


async def test_partition_keys_keep_each_key_in_one_mini_batch(parallel: ParallelRun) -> None:
    names = [f"region={r}/day={d}/{i}.txt" for r in ("eu", "us") for d in ("1", "2") for i in range(2)]
    inputs = await parallel.upload_inputs({name: b"x" for name in names})

    outcome = await parallel.run(inputs, PARTITION_SCRIPT, PlanSpec("files", "100", partition_keys=("region", "day")))

    assert outcome.plan.count == 4
    groups = []
    for i in range(outcome.plan.count):
        rows = (await parallel.store.read(outcome.results, f"{i}.txt") or b"").decode().splitlines()
        groups.append(sorted(rows))
    assert sorted(groups) == [sorted(names[k : k + 2]) for k in range(0, len(names), 2)]
    assert sorted(outcome.output.splitlines()) == sorted(names)


async def test_run_returning_none_counts_every_item_as_failed(parallel: ParallelRun) -> None:
    inputs = await parallel.upload_inputs({"only.txt": b"x"})

    outcome = await parallel.run(inputs, "def run(mini_batch):\n    return None\n", PlanSpec("files", "1"))

    # run() returning None: nothing processed, the item and the mini-batch count as failed (Azure ML: fewer
    # results than items), the task still succeeds (not retried).
    assert (outcome.totals.processed_items, outcome.totals.failed_items) == (0, 1)
    assert outcome.totals.failed_mini_batches == (0,)
    assert outcome.output == ""
    assert outcome.tasks["mb-0"].state == models.BatchTaskState.COMPLETED


MODEL_SCRIPT = script(
    """
    import argparse
    import os

    model = {}

    def init():
        parser = argparse.ArgumentParser()
        parser.add_argument("--model")
        parser.add_argument("--data")
        parser.add_argument("--factor", type=int)
        args, _ = parser.parse_known_args()
        assert os.path.isabs(args.model) and os.path.isabs(args.data), (args.model, args.data)
        model["weights"] = open(os.path.join(args.model, "weights.txt")).read().strip()
        model["vocab"] = open(os.path.join(args.model, "nested", "vocab.txt")).read().strip()
        model["data"] = args.data
        model["factor"] = args.factor

    def run(mini_batch):
        assert all(path.startswith(model["data"] + os.sep) for path in mini_batch)
        return [
            f"{os.path.basename(p)} {model['weights']} {model['vocab']} {model['factor'] * len(open(p).read())}"
            for p in mini_batch
        ]
    """
)


async def test_every_input_reaches_the_script_and_references_become_node_paths(parallel: ParallelRun) -> None:
    """Azure ML gives a parallel job's script every input through program_arguments (the seed: ``--model
    ${{inputs.score_model}}``, read by init()): a folder input other than input_data is on the node before
    init() as resource files (one read SAS URL per blob), ${{inputs.x}} becomes its absolute path, input_data's
    is the folder the mini-batch's files are in, and a literal input is its value."""
    inputs = await parallel.upload_inputs({"a.txt": b"xx", "b.txt": b"xxx"})
    model = {"weights.txt": b"w-42\n", "nested/vocab.txt": b"v-7\n"}

    outcome = await parallel.run(
        inputs,
        MODEL_SCRIPT,
        PlanSpec("files", None),
        program_arguments="--model ${{inputs.score_model}} --data=${{ inputs.data }} --factor ${{inputs.factor}}",
        job_inputs={"score_model": model},
        literals={"inputs.factor": "10"},
    )

    assert outcome.plan.count == 1  # miniBatchSize absent: 10 files
    assert outcome.output.splitlines() == ["a.txt w-42 v-7 20", "b.txt w-42 v-7 30"]
    assert outcome.totals.failed_mini_batches == ()


def test_a_pip_environment_planted_by_another_job_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tasks of every job on a shared pool can write the node's shared folder. A folder another job planted,
    complete mark and all, under the name this job's requirements alone would give (the old key) or under
    its own job's key, is not the folder this job installs into and imports from."""
    shared = tmp_path / "shared"
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# nothing to install: pip runs, offline, and succeeds\n")
    envs = shared / driver.ENVIRONMENTS
    planted = [
        envs / hashlib.sha256(requirements.read_bytes()).hexdigest()[:16],  # keyed by the requirements only
        envs / driver.environment_key("pj-other", requirements.read_bytes()),  # the other job's own
    ]
    for folder in planted:
        folder.mkdir(parents=True)
        (folder / driver.COMPLETE_MARK).touch()
        (folder / "sitecustomize.py").write_text("raise SystemExit('planted')\n")
    monkeypatch.setenv("AZ_BATCH_NODE_SHARED_DIR", str(shared))
    monkeypatch.setenv("AZ_BATCH_JOB_ID", "pj-victim")
    monkeypatch.setenv("PIP_NO_INDEX", "1")

    site = driver.prepare_environment(requirements, tmp_path)

    assert site == envs / driver.environment_key("pj-victim", requirements.read_bytes())
    assert site not in planted
    assert (site / driver.COMPLETE_MARK).exists()
    assert not (site / "sitecustomize.py").exists()
    assert driver.prepare_environment(requirements, tmp_path) == site, "built once per node and job, then reused"


async def test_a_task_whose_tokens_expired_in_the_queue_fails_clearly(parallel: ParallelRun) -> None:
    """Tokens end with the job: a task that starts after its tokens expired cannot fetch its resource files
    (Azurite refuses the expired SAS with 403), so it completes as failed with Batch's ``BlobAccessDenied``,
    never runs and never hangs; its mini-batch counts as failed."""
    inputs = await parallel.upload_inputs({"a.txt": b"a\n"})

    outcome = await parallel.run(
        inputs, FILE_SCRIPT, PlanSpec("files", "5"), expiry=datetime.now(UTC) - timedelta(hours=1)
    )

    (task,) = outcome.tasks.values()
    assert task.execution_info is not None
    assert task.execution_info.result == models.BatchTaskExecutionResult.FAILURE
    assert task.execution_info.failure_info is not None
    assert task.execution_info.failure_info.code == "BlobAccessDenied"
    assert outcome.totals.failed_indexes == "0"
    assert outcome.output == ""
