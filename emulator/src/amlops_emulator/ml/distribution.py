"""Which processes a command job runs and the environment Azure ML gives each one, by its ``distribution``.

Pure functions: ``Distribution.from_rest`` reads the REST ``distribution`` object (``DistributionConfiguration``:
``distributionType`` Mpi | PyTorch | TensorFlow; ``processCountPerInstance`` for Mpi and PyTorch;
``workerCount`` (default: the instance count) and ``parameterServerCount`` for TensorFlow, as azure-ai-ml's
``_restclient/arm_ml_service/models`` define them), and :func:`plan` lays the processes out on the nodes.

The environment, from Azure ML's "Distributed GPU training guide" (learn.microsoft.com/azure/machine-learning/
how-to-train-distributed-gpu, SDK v1 and v2):

- **Mpi**: Open MPI's own variables (``OMPI_COMM_WORLD_RANK``, ``OMPI_COMM_WORLD_SIZE``,
  ``OMPI_COMM_WORLD_LOCAL_RANK``, ``OMPI_COMM_WORLD_LOCAL_SIZE``: Open MPI's "Environment variables set for MPI
  applications"), plus Azure ML's ``AZ_BATCHAI_MPI_MASTER_NODE`` (the first node's address) and, on a
  multi-node job, ``AZ_BATCH_MASTER_NODE`` (``address:port``); training scripts written for Azure ML read them
  that way (hi-ml's ``ENV_AZ_BATCHAI_MPI_MASTER_NODE``, the guide's ``set_environment_variables_for_nccl_backend``
  reads ``AZ_BATCH_MASTER_NODE`` on multi-node jobs and ``AZ_BATCHAI_MPI_MASTER_NODE`` otherwise).
- **PyTorch**: ``MASTER_ADDR``, ``MASTER_PORT``, ``WORLD_SIZE`` (all processes), ``NODE_RANK`` (the instance's
  index), ``RANK`` (global) and ``LOCAL_RANK`` (within the instance): the guide's list for
  ``torch.distributed.init_process_group(init_method="env://")``.
- **TensorFlow**: ``TF_CONFIG``, a JSON ``{"cluster": {"worker": [...], "ps": [...]}, "task": {"type", "index"},
  "environment": "cloud"}`` (the guide's "Environment variables for TensorFlow (TF_CONFIG)"), one process per
  task.

Emulator choices: every node is this machine, so ``MASTER_ADDR`` and the cluster addresses are ``127.0.0.1``
(listNodes still shows each node's own ``privateIpAddress``) and the ports are free ones picked at start, not
Azure's fixed ones, so two runs never collide.

Log names: a job without ``distribution`` writes ``user_logs/std_log.txt``; a distributed one writes
``user_logs/std_log_process_{rank}.txt`` per process, the rank zero-padded to the digits of the largest rank
(``std_log_process_00.txt`` in azure-ai-ml's own stream test fixtures for an MPI job; azure-ai-ml's
``COMMON_RUNTIME_STREAM_LOG_PATTERN`` = ``user_logs/std_log[\\D]*[0]*(?:_ps)?\\.txt``, whose ``_ps`` is a
TensorFlow parameter server's log: ``std_log_process_{index}_ps.txt`` here). The padding rule is inferred from
those two names.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

MPI = "Mpi"
PYTORCH = "PyTorch"
TENSORFLOW = "TensorFlow"
_KINDS = {k.lower(): k for k in (MPI, PYTORCH, TENSORFLOW)}
LOCALHOST = "127.0.0.1"
SINGLE_LOG = "user_logs/std_log.txt"


class DistributionError(ValueError):
    """The ``distribution`` object or the instance count is not one Azure ML accepts."""


@dataclass(frozen=True)
class Distribution:
    kind: str | None = None  # None: no distribution, the command runs once per instance
    process_count_per_instance: int = 1
    worker_count: int | None = None  # TensorFlow only; None: the instance count
    parameter_server_count: int = 0  # TensorFlow only

    @classmethod
    def from_rest(cls, body: Mapping[str, Any] | None) -> Distribution:
        if body is None:
            return cls()
        kind = _KINDS.get(str(body.get("distributionType", "")).lower())
        if kind is None:
            raise DistributionError(
                f"distribution.distributionType {body.get('distributionType')!r} is not one of "
                "Mpi, PyTorch, TensorFlow."
            )
        if kind == TENSORFLOW:
            return cls(
                kind,
                worker_count=_count(body, "workerCount", None, minimum=1),
                parameter_server_count=_count(body, "parameterServerCount", 0, minimum=0) or 0,
            )
        return cls(kind, process_count_per_instance=_count(body, "processCountPerInstance", 1, minimum=1) or 1)


def _count(body: Mapping[str, Any], name: str, default: int | None, *, minimum: int) -> int | None:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise DistributionError(f"distribution.{name} must be an integer >= {minimum}, not {value!r}.")
    return value


@dataclass(frozen=True)
class Process:
    """One user process of a run: the node (instance) it runs on, its log file, the variables it sees."""

    node_rank: int
    local_rank: int
    log_name: str
    env: dict[str, str]


def plan(distribution: Distribution, instance_count: int, port: Callable[[], int]) -> list[Process]:
    """The processes of a run on ``instance_count`` nodes, in rank order. ``port`` hands out free ports."""
    if instance_count < 1:
        raise DistributionError(f"resources.instanceCount must be >= 1, not {instance_count}.")
    if distribution.kind == TENSORFLOW:
        return _tensorflow(distribution, instance_count, port)
    per_node = distribution.process_count_per_instance
    world = instance_count * per_node
    master_port = port() if distribution.kind is not None else 0
    processes = []
    for rank in range(world):
        node_rank, local_rank = divmod(rank, per_node)
        if distribution.kind is None:
            env: dict[str, str] = {}
        elif distribution.kind == MPI:
            env = _mpi_env(rank, world, local_rank, per_node, instance_count, master_port)
        else:
            env = _pytorch_env(rank, world, local_rank, node_rank, master_port)
        processes.append(Process(node_rank, local_rank, _log_name(distribution, rank, world), env))
    return processes


def _log_name(distribution: Distribution, rank: int, world: int, suffix: str = "") -> str:
    if distribution.kind is None and world == 1:
        return SINGLE_LOG
    return f"user_logs/std_log_process_{rank:0{len(str(max(world - 1, 0)))}d}{suffix}.txt"


def _mpi_env(rank: int, world: int, local_rank: int, per_node: int, nodes: int, port: int) -> dict[str, str]:
    env = {
        "OMPI_COMM_WORLD_RANK": str(rank),
        "OMPI_COMM_WORLD_SIZE": str(world),
        "OMPI_COMM_WORLD_LOCAL_RANK": str(local_rank),
        "OMPI_COMM_WORLD_LOCAL_SIZE": str(per_node),
        "AZ_BATCHAI_MPI_MASTER_NODE": LOCALHOST,
    }
    if nodes > 1:
        env["AZ_BATCH_MASTER_NODE"] = f"{LOCALHOST}:{port}"
    return env


def _pytorch_env(rank: int, world: int, local_rank: int, node_rank: int, port: int) -> dict[str, str]:
    return {
        "MASTER_ADDR": LOCALHOST,
        "MASTER_PORT": str(port),
        "WORLD_SIZE": str(world),
        "NODE_RANK": str(node_rank),
        "RANK": str(rank),
        "LOCAL_RANK": str(local_rank),
    }


def _tensorflow(distribution: Distribution, instance_count: int, port: Callable[[], int]) -> list[Process]:
    """Workers then parameter servers, each task on node ``index % instance_count``, one process per task."""
    workers = distribution.worker_count or instance_count
    tasks = [("worker", i) for i in range(workers)] + [("ps", i) for i in range(distribution.parameter_server_count)]
    cluster: dict[str, list[str]] = {}
    for kind, _ in tasks:
        cluster.setdefault(kind, []).append(f"{LOCALHOST}:{port()}")
    per_node: dict[int, int] = {}
    processes = []
    for kind, index in tasks:
        node_rank = index % instance_count
        local_rank = per_node.get(node_rank, 0)
        per_node[node_rank] = local_rank + 1
        config = {"cluster": cluster, "task": {"type": kind, "index": index}, "environment": "cloud"}
        count = workers if kind == "worker" else distribution.parameter_server_count
        log = _log_name(distribution, index, count, "_ps" if kind == "ps" else "")
        processes.append(Process(node_rank, local_rank, log, {"TF_CONFIG": json.dumps(config)}))
    return processes
