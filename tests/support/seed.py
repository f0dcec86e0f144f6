"""The seed's ``parallel_run_function`` example (/work/shared/seeds: "Batch Score with Tabular Dataset"), as both
ParallelJob backends run it: its entry script, its data and the rows it must give, in one place so that the
emulator's Azure ML (tests/emulator/ml/test_pipeline_jobs.py) and the Batch backend
(tests/e2e/test_paralleljob_seed.py) are held to the same rows."""

from __future__ import annotations

# The seed's entry script (azureml-examples sdk/python/jobs/pipelines/1g_pipeline_with_parallel_nodes/src/
# tabular_batch_inference.py) without mlflow and sklearn: init() reads --model with argparse's
# parse_known_args, as the seed's does; run() gets a DataFrame when pandas is there, else a list of dicts.
SCORE_SCRIPT = """\
import argparse, pathlib


def init():
    global weights
    parser = argparse.ArgumentParser(allow_abbrev=False, description="ParallelRunStep Agent")
    parser.add_argument("--model", type=str, default=0)
    args, _ = parser.parse_known_args()
    weights = (pathlib.Path(args.model) / "model.txt").read_text()


def run(input_data):
    rows = input_data.to_dict("records") if hasattr(input_data, "to_dict") else input_data
    return [f"{row['id']} {row['sepal_length']} {weights}" for row in rows]
"""
CONDA_FILE = "name: batch\ndependencies:\n  - python=3.10\n"
ITEMS = 40  # rows of the tabular input: mini_batch_size "100" (bytes) cuts them into several mini-batches
IRIS_CSV = "id,sepal_length\n" + "".join(f"{i},{4 + i / 10:.1f}\n" for i in range(ITEMS))
MLTABLE = "paths:\n  - file: ./iris.csv\ntransformations:\n  - read_delimited\n"
MODEL = "weights-v1"
ROWS = [f"{i} {4 + i / 10:.1f} {MODEL}" for i in range(ITEMS)]  # parallel_run_step.txt, in item order
