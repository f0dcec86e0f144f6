"""The process layout and environment of a command job by its ``distribution`` (``ml/distribution.py``): pure.

Evidence: azure-ai-ml 1.35's REST models (``Mpi``/``PyTorch``: ``processCountPerInstance``; ``TensorFlow``:
``workerCount`` defaulting to the instance count, ``parameterServerCount``); Azure ML's "Distributed GPU training
guide" (TF_CONFIG's ``cluster``/``task``/``environment``); azure-ai-ml's ``COMMON_RUNTIME_STREAM_LOG_PATTERN``
(``user_logs/std_log[\\D]*[0]*(?:_ps)?\\.txt``) and its stream fixture ``user_logs/std_log_process_00.txt``.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from amlops_emulator.ml.distribution import Distribution, DistributionError, plan

pytestmark = pytest.mark.emulator


def _ports() -> Any:
    counter = itertools.count(5000)
    return lambda: next(counter)


@pytest.mark.parametrize(
    ("body", "instances", "logs"),
    [
        pytest.param(None, 1, ["user_logs/std_log.txt"], id="no distribution, one node: std_log.txt"),
        pytest.param(
            None, 2, ["user_logs/std_log_process_0.txt", "user_logs/std_log_process_1.txt"], id="once per node"
        ),
        pytest.param(
            {"distributionType": "PyTorch"}, 1, ["user_logs/std_log_process_0.txt"], id="distributed: process logs"
        ),
        pytest.param(
            {"distributionType": "Mpi", "processCountPerInstance": 6},
            2,
            [f"user_logs/std_log_process_{r:02d}.txt" for r in range(12)],
            id="twelve ranks: zero-padded to two digits",
        ),
        pytest.param(
            {"distributionType": "TensorFlow", "parameterServerCount": 1},
            2,
            [
                "user_logs/std_log_process_0.txt",
                "user_logs/std_log_process_1.txt",
                "user_logs/std_log_process_0_ps.txt",
            ],
            id="tensorflow: a worker per instance, the parameter server's log with _ps",
        ),
    ],
)
def test_log_names(body: dict[str, Any] | None, instances: int, logs: list[str]) -> None:
    assert [p.log_name for p in plan(Distribution.from_rest(body), instances, _ports())] == logs


def test_tensorflow_tf_config_lists_the_cluster_and_names_each_task() -> None:
    """One process per task, workers spread over the instances; every TF_CONFIG has the same cluster."""
    body = {"distributionType": "TensorFlow", "workerCount": 3, "parameterServerCount": 1}
    processes = plan(Distribution.from_rest(body), 2, _ports())
    configs = [json.loads(p.env["TF_CONFIG"]) for p in processes]
    assert configs[0]["cluster"] == {
        "worker": ["127.0.0.1:5000", "127.0.0.1:5001", "127.0.0.1:5002"],
        "ps": ["127.0.0.1:5003"],
    }
    assert [c["task"] for c in configs] == [
        {"type": "worker", "index": 0},
        {"type": "worker", "index": 1},
        {"type": "worker", "index": 2},
        {"type": "ps", "index": 0},
    ]
    assert {c["environment"] for c in configs} == {"cloud"}
    assert [(p.node_rank, p.local_rank) for p in processes] == [(0, 0), (1, 0), (0, 1), (0, 2)]


def test_single_node_mpi_has_no_multi_node_master_variable() -> None:
    """AZ_BATCH_MASTER_NODE is the multi-node variable; a one-node MPI job gets AZ_BATCHAI_MPI_MASTER_NODE."""
    [process] = plan(Distribution.from_rest({"distributionType": "mpi"}), 1, _ports())
    assert "AZ_BATCH_MASTER_NODE" not in process.env
    assert process.env["AZ_BATCHAI_MPI_MASTER_NODE"] == "127.0.0.1"


@pytest.mark.parametrize(
    ("body", "instances"),
    [
        pytest.param({"distributionType": "Ray"}, 1, id="unknown distribution type"),
        pytest.param({"distributionType": "PyTorch", "processCountPerInstance": 0}, 1, id="no process per instance"),
        pytest.param({"distributionType": "Mpi", "processCountPerInstance": "2"}, 1, id="count as a string"),
        pytest.param({"distributionType": "TensorFlow", "workerCount": 0}, 1, id="no worker"),
        pytest.param(None, 0, id="no instance"),
    ],
)
def test_refused(body: dict[str, Any] | None, instances: int) -> None:
    with pytest.raises(DistributionError):
        plan(Distribution.from_rest(body), instances, _ports())
