"""The seed's ``parallel_run_function`` example as a ParallelJob on a BatchCompute (issue 18, point 2): a tabular
MLTable input cut into mini-batches, a ``uri_folder`` model input that ``init()`` reads through ``--model
${{inputs.score_model}}``, ``append_row_to``, one row per item. Real apiserver, the operator process, the Batch
emulator's node agent running the driver, Azurite.

The script, data and expected rows are those of the same example on the emulator's Azure ML
(tests/emulator/ml/test_pipeline_jobs.py::test_the_seeds_parallel_pipeline_runs_to_completed_with_one_row_per_item),
so both backends are held to the same rows. The seed's ``environment.image`` is left out: the Batch emulator runs
no containers (README, ParallelJob: Environment)."""

from __future__ import annotations

import textwrap

import pytest

from tests.support.objects import Refused, condition, wait_condition
from tests.support.seed import CONDA_FILE, IRIS_CSV, ITEMS, MLTABLE, MODEL, ROWS, SCORE_SCRIPT

from . import test_paralleljob
from .test_paralleljob import Bed

pytestmark = pytest.mark.e2e
bed = test_paralleljob.bed  # a Ready BatchCompute "batch" with pool "scoring", the storage Secret


def test_the_seeds_tabular_scoring_with_a_model_input_runs_to_complete_with_one_row_per_item(bed: Bed) -> None:
    """The seed: inputs job_data_path (mltable) and score_model (uri_folder), input_data job_data_path,
    mini_batch_size "100" (bytes of rows: several mini-batches), max_concurrency_per_instance 2, thresholds 5,
    retry_settings max_retries 2 / timeout 60, logging_level DEBUG, program_arguments "--model
    ${{inputs.score_model}}", append_row_to ${{outputs.job_output_path}}. The MLTable file names the data
    (``paths: - file: ./iris.csv``): a stray CSV beside it is not part of the table."""
    bed.upload("seed-code", {"tabular_batch_inference.py": SCORE_SCRIPT, "environment_parallel.yml": CONDA_FILE})
    bed.upload("iris", {"iris.csv": IRIS_CSV, "MLTable": MLTABLE, "stray.csv": "id,sepal_length\n999,0.0\n"})
    bed.upload("model", {"model.txt": MODEL})

    bed.job(
        "seed",
        displayName="Batch Score with Tabular Dataset",
        description="parallel component for batch score",
        inputs={
            "job_data_path": {"uri": bed.uri("iris"), "type": "mltable"},
            "score_model": {"uri": bed.uri("model"), "type": "uri_folder"},
        },
        outputs={"job_output_path": {"uri": bed.uri("out/seed")}},
        inputData="${{inputs.job_data_path}}",
        maxConcurrencyPerInstance=2,
        miniBatchSize="100",
        miniBatchErrorThreshold=5,
        loggingLevel="DEBUG",
        errorThreshold=5,
        retrySettings={"maxRetries": 2, "timeout": 60},
        task={
            "code": bed.uri("seed-code"),
            "entryScript": "tabular_batch_inference.py",
            "environment": {"condaFile": "environment_parallel.yml"},
            "programArguments": "--model ${{inputs.score_model}}",
            "appendRowTo": "${{outputs.job_output_path}}",
        },
    )
    obj = bed.wait_phase("seed", "Complete", "Failed", timeout=180)

    status = obj["status"]
    assert status["phase"] == "Complete", status
    assert condition(obj, "Complete")["status"] == "True"
    rows = bed.output_rows("seed")
    assert rows == ROWS
    assert status["items"] == {"processed": ITEMS, "failed": 0}
    total = status["miniBatches"]["total"]
    assert total > 1, "100 bytes of rows per mini-batch cut 40 rows into several"
    assert status["miniBatches"]["succeeded"] == total
    assert status["progress"] == f"{total}/{total}"


LITERAL = """
import sys

def init():
    global factor, offset
    factor = int(sys.argv[sys.argv.index("--factor") + 1])
    offset = int(open(sys.argv[sys.argv.index("--offset") + 1]).read())  # a uri_file input: the file's path

def run(mini_batch):
    return [f"{len(open(path).read()) * factor + offset}" for path in mini_batch]
"""


def test_inputs_are_checked_by_the_apiserver_and_references_before_anything_runs(bed: Bed) -> None:
    """A literal input needs its type and a value of that type (CEL on spec.inputs, as azure-ai-ml's Input
    does); ``${{outputs.x}}`` in programArguments is Stalled InvalidSpec before any Batch job exists (files a
    script writes to an output folder are not collected on Batch), a missing input InputNotFound; a literal
    reaches the script as its value, a uri_file input as the path of the file on the node."""
    data = {"uri": bed.uri("inputs")}
    with pytest.raises(Refused) as untyped:
        bed.job("untyped", inputs={"data": data, "n": {"value": "3"}})
    assert "a literal input (string, integer, number, boolean) sets value" in untyped.value.stderr
    with pytest.raises(Refused) as not_integer:
        bed.job("not-integer", inputs={"data": data, "n": {"type": "integer", "value": "3.5"}})
    assert "value is not a literal of type integer" in not_integer.value.stderr

    code = {"code": bed.uri("literal-code"), "entryScript": "literal.py", "appendRowTo": "${{outputs.scores}}"}
    bed.job("to-output", task={**code, "programArguments": "--out ${{outputs.scores}}"})
    stalled = wait_condition(bed.k8s, "paralleljob", "to-output", bed.ns, "Stalled", timeout=60)
    assert condition(stalled, "Stalled")["reason"] == "InvalidSpec"
    assert "${{outputs.scores}}" in condition(stalled, "Stalled")["message"]
    assert not bed.listing("out/to-output"), "nothing planned or written"

    bed.upload("literal-code", {"literal.py": textwrap.dedent(LITERAL).lstrip()})
    bed.upload("inputs", {"a.txt": "xx", "b.txt": "xxx"})
    bed.upload("offset", {"offset.txt": "100"})
    arguments = "--factor ${{inputs.factor}} --offset ${{inputs.offset}}"
    inputs = {"data": data, "factor": {"type": "integer", "value": "7"}}
    bed.job("missing", inputs={**inputs, "offset": {"uri": bed.uri("offset/nowhere.txt"), "type": "uri_file"}},
            task={**code, "programArguments": arguments})  # fmt: skip
    bed.job("literal", inputs={**inputs, "offset": {"uri": bed.uri("offset/offset.txt"), "type": "uri_file"}},
            task={**code, "programArguments": arguments})  # fmt: skip
    done = bed.wait_phase("literal", "Complete", "Failed", timeout=120)
    assert done["status"]["phase"] == "Complete", done["status"]
    assert bed.output_rows("literal") == ["114", "121"]
    missing = wait_condition(bed.k8s, "paralleljob", "missing", bed.ns, "Stalled", timeout=60)
    assert condition(missing, "Stalled")["reason"] == "InputNotFound"
    assert "offset/nowhere.txt" in condition(missing, "Stalled")["message"]
