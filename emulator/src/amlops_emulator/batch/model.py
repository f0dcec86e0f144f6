"""Batch entities as the emulator holds them: pools with their simulated nodes, jobs, and tasks.

Each entity keeps the body it was created with (``spec``, defaults filled in as the service fills them) and
the runtime facts the service adds; ``to_wire`` renders the GET body with the service's field names
(azure-api-fidelity.md §4.3).
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from amlops_emulator.batch.wire import JSON, UNLIMITED_DURATION, iso, new_etag

# Node states in which the node accepts new tasks.
SCHEDULABLE_NODE_STATES = frozenset({"idle", "running"})
# Task states that hold a slot on a node (a job's maxParallelTasks counts them).
RUNNING = frozenset({"preparing", "running"})


@dataclass(eq=False)
class Node:
    id: str
    pool_id: str
    dedicated: bool
    slots: int
    state: str
    state_since: datetime
    allocation_time: datetime
    ip_address: str
    ready_at: datetime | None = None  # starting → idle
    recover_at: datetime | None = None  # preempted → starting
    scheduling_state: str = "enabled"
    running: dict[str, int] = field(default_factory=dict)  # task url path → slots it holds
    total_tasks_run: int = 0
    total_tasks_succeeded: int = 0

    @property
    def free_slots(self) -> int:
        return self.slots - sum(self.running.values())

    @property
    def schedulable(self) -> bool:
        return self.state in SCHEDULABLE_NODE_STATES and self.scheduling_state == "enabled"

    def set_state(self, state: str, now: datetime) -> None:
        if state != self.state:
            self.state, self.state_since = state, now

    def to_wire(self, pool_url: str, vm_size: str) -> JSON:
        return {
            "id": self.id,
            "url": f"{pool_url}/nodes/{self.id}",
            "state": self.state,
            "schedulingState": self.scheduling_state,
            "stateTransitionTime": iso(self.state_since),
            "allocationTime": iso(self.allocation_time),
            "lastBootTime": iso(self.allocation_time),
            "ipAddress": self.ip_address,
            "affinityId": f"TVM:{self.id}",
            "vmSize": vm_size,
            "totalTasksRun": self.total_tasks_run,
            "totalTasksSucceeded": self.total_tasks_succeeded,
            "runningTasksCount": len(self.running),
            "runningTaskSlotsCount": sum(self.running.values()),
            "isDedicated": self.dedicated,
        }


@dataclass(eq=False)
class Pool:
    spec: JSON
    created: datetime
    target_dedicated: int
    target_low_priority: int
    etag: str = field(default_factory=new_etag)
    last_modified: datetime | None = None
    state: str = "active"
    state_since: datetime | None = None
    allocation_state: str = "steady"
    allocation_since: datetime | None = None
    resize_timeout: str = "PT15M"
    transition_at: datetime | None = None  # when the current resize, stop or delete completes
    nodes: dict[str, Node] = field(default_factory=dict)
    node_seq: int = 0

    @property
    def id(self) -> str:
        return str(self.spec["id"])

    @property
    def slots_per_node(self) -> int:
        return int(self.spec["taskSlotsPerNode"])

    def touch(self, now: datetime) -> None:
        self.etag, self.last_modified = new_etag(), now

    def set_allocation_state(self, state: str, now: datetime) -> None:
        if state != self.allocation_state:
            self.allocation_state, self.allocation_since = state, now

    def to_wire(self, url: str) -> JSON:
        body: JSON = {
            **self.spec,
            "url": url,
            "eTag": self.etag,
            "lastModified": iso(self.last_modified or self.created),
            "creationTime": iso(self.created),
            "state": self.state,
            "stateTransitionTime": iso(self.state_since or self.created),
            "allocationState": self.allocation_state,
            "allocationStateTransitionTime": iso(self.allocation_since or self.created),
            "resizeTimeout": self.resize_timeout,
            "currentDedicatedNodes": sum(1 for n in self.nodes.values() if n.dedicated),
            "currentLowPriorityNodes": sum(1 for n in self.nodes.values() if not n.dedicated),
            "targetDedicatedNodes": self.target_dedicated,
            "targetLowPriorityNodes": self.target_low_priority,
        }
        return body


@dataclass(eq=False)
class Task:
    job: Job
    spec: JSON
    seq: int
    created: datetime
    max_retries: int  # -1: unlimited
    etag: str = field(default_factory=new_etag)
    last_modified: datetime | None = None
    state: str = "active"
    state_since: datetime | None = None
    previous_state: str | None = None
    previous_state_since: datetime | None = None
    retry_count: int = 0
    requeue_count: int = 0
    last_retry_time: datetime | None = None
    last_requeue_time: datetime | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    exit_code: int | None = None
    result: str | None = None
    failure_info: JSON | None = None
    pool_id: str | None = None
    node_id: str | None = None
    directory: Path | None = None  # the task directory on its node (stdout.txt, stderr.txt, wd/)
    deleted: bool = False

    @property
    def id(self) -> str:
        return str(self.spec["id"])

    @property
    def job_id(self) -> str:
        return self.job.id

    @property
    def key(self) -> str:
        return f"jobs/{self.job_id}/tasks/{self.id}"

    @property
    def required_slots(self) -> int:
        return int(self.spec.get("requiredSlots", 1))

    def set_state(self, state: str, now: datetime) -> None:
        if state == self.state:
            return
        # The job counts its completed tasks so that onAllTasksComplete costs O(1) per completion.
        self.job.completed_tasks += (state == "completed") - (self.state == "completed")
        # ...and its running ones, so that maxParallelTasks costs O(1) per task scheduled.
        self.job.running_tasks += (state in RUNNING) - (self.state in RUNNING)
        self.previous_state, self.previous_state_since = self.state, self.state_since or self.created
        self.state, self.state_since = state, now
        self.etag, self.last_modified = new_etag(), now

    def to_wire(self, account_url: str) -> JSON:
        body: JSON = {
            **self.spec,
            "url": f"{account_url}/{self.key}",
            "eTag": self.etag,
            "lastModified": iso(self.last_modified or self.created),
            "creationTime": iso(self.created),
            "state": self.state,
            "stateTransitionTime": iso(self.state_since or self.created),
        }
        if self.previous_state is not None and self.previous_state_since is not None:
            body["previousState"] = self.previous_state
            body["previousStateTransitionTime"] = iso(self.previous_state_since)
        # Always present, {"retryCount": 0, "requeueCount": 0} before the first run (Tasks_ListTasks.json).
        body["executionInfo"] = self._execution_info()
        if self.node_id is not None and self.pool_id is not None:
            pool_url = f"{account_url}/pools/{self.pool_id}"
            body["nodeInfo"] = {
                "affinityId": f"TVM:{self.node_id}",
                "nodeUrl": f"{pool_url}/nodes/{self.node_id}",
                "poolId": self.pool_id,
                "nodeId": self.node_id,
                "taskRootDirectory": f"workitems/{self.job_id}/job-1/{self.id}",
                "taskRootDirectoryUrl": f"{pool_url}/nodes/{self.node_id}/files/workitems/"
                f"{self.job_id}/job-1/{self.id}",
            }
        return body

    def _execution_info(self) -> JSON:
        info: JSON = {"retryCount": self.retry_count, "requeueCount": self.requeue_count}
        optional = {
            "startTime": self.start_time and iso(self.start_time),
            "endTime": self.end_time and iso(self.end_time),
            "exitCode": self.exit_code,
            "result": self.result,
            "failureInfo": self.failure_info,
            "lastRetryTime": self.last_retry_time and iso(self.last_retry_time),
            "lastRequeueTime": self.last_requeue_time and iso(self.last_requeue_time),
        }
        info.update({k: v for k, v in optional.items() if v is not None})
        return info


@dataclass(eq=False)
class Job:
    spec: JSON
    created: datetime
    etag: str = field(default_factory=new_etag)
    last_modified: datetime | None = None
    state: str = "active"
    state_since: datetime | None = None
    previous_state: str | None = None
    previous_state_since: datetime | None = None
    end_time: datetime | None = None
    terminate_reason: str | None = None
    started_monotonic: float = 0.0  # real time: job maxWallClockTime is enforced on real time
    disable_tasks: str = "requeue"  # what the last disable did to running tasks: requeue, terminate, wait
    tasks: dict[str, Task] = field(default_factory=dict)
    task_seq: int = 0
    completed_tasks: int = 0
    running_tasks: int = 0  # preparing or running

    @property
    def at_max_parallel_tasks(self) -> bool:
        """maxParallelTasks (-1: no limit) tasks of this job already run: the next waits, whatever free slots the
        pool has (azure-batch 15.1.0 BatchJob.max_parallel_tasks: "The maximum number of tasks that can be executed
        in parallel for the job")."""
        limit = int(self.spec.get("maxParallelTasks", -1))
        return 0 < limit <= self.running_tasks

    @property
    def all_tasks_complete(self) -> bool:
        return bool(self.tasks) and self.completed_tasks == len(self.tasks)

    def remove_task(self, task: Task) -> None:
        del self.tasks[task.id]
        self.completed_tasks -= task.state == "completed"
        task.deleted = True

    @property
    def id(self) -> str:
        return str(self.spec["id"])

    @property
    def pool_id(self) -> str | None:
        pool_id = self.spec.get("poolInfo", {}).get("poolId")
        return str(pool_id) if pool_id else None

    @property
    def max_task_retry_count(self) -> int:
        return int(self.spec["constraints"].get("maxTaskRetryCount", 0))

    def touch(self, now: datetime) -> None:
        self.etag, self.last_modified = new_etag(), now

    def set_state(self, state: str, now: datetime) -> None:
        if state == self.state:
            return
        self.previous_state, self.previous_state_since = self.state, self.state_since or self.created
        self.state, self.state_since = state, now
        self.touch(now)

    def to_wire(self, url: str) -> JSON:
        info: JSON = {"startTime": iso(self.created)}
        if self.pool_id:
            info["poolId"] = self.pool_id
        if self.end_time is not None:
            info["endTime"] = iso(self.end_time)
        if self.terminate_reason is not None:
            info["terminateReason"] = self.terminate_reason
        body: JSON = {
            **self.spec,
            "url": url,
            "eTag": self.etag,
            "lastModified": iso(self.last_modified or self.created),
            "creationTime": iso(self.created),
            "state": self.state,
            "stateTransitionTime": iso(self.state_since or self.created),
            "executionInfo": info,
        }
        if self.previous_state is not None and self.previous_state_since is not None:
            body["previousState"] = self.previous_state
            body["previousStateTransitionTime"] = iso(self.previous_state_since)
        return body


def job_defaults(body: JSON) -> JSON:
    """The defaults the service fills in on a new job (recording in azure-api-fidelity.md §4.3)."""
    constraints = {"maxWallClockTime": UNLIMITED_DURATION, "maxTaskRetryCount": 0}
    constraints.update(body.get("constraints") or {})
    return {
        "priority": 0,
        "maxParallelTasks": -1,
        "allowTaskPreemption": False,
        "usesTaskDependencies": False,
        "onAllTasksComplete": "noaction",
        "onTaskFailure": "noaction",
        **body,
        "constraints": constraints,
    }


def pool_defaults(body: JSON) -> JSON:
    """Service defaults of a new pool; targets and resizeTimeout live on ``Pool`` because resize changes them."""
    spec = {
        "taskSlotsPerNode": 1,
        "taskSchedulingPolicy": {"nodeFillType": "Spread"},
        "enableInterNodeCommunication": False,
        "enableAutoScale": False,
        **body,
    }
    for moved in ("targetDedicatedNodes", "targetLowPriorityNodes", "resizeTimeout"):
        spec.pop(moved, None)
    return spec


@dataclass
class Account:
    """One Batch account of the seed, served under ``/{name}``."""

    name: str
    key: str
    pools: dict[str, Pool] = field(default_factory=dict)
    jobs: dict[str, Job] = field(default_factory=dict)
    # Tasks waiting for a slot, per pool id (the pool need not exist yet), oldest first.
    ready: defaultdict[str, deque[Task]] = field(default_factory=lambda: defaultdict(deque))
