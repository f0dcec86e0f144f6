"""The cluster behind one AmlCompute: nodes that allocate, prepare, idle, run, leave and get preempted.

State is computed lazily: every read first calls :meth:`Cluster.advance` with the virtual clock's "now", which
replays the due node transitions in time order (a tiny discrete-event simulation). No background task runs, so a
stopped clock means a frozen cluster and a test can step time exactly.

Scaling follows AmlCompute's autoscaler: the cluster holds ``max(minNodeCount, nodes the work needs)`` nodes
(never more than ``maxNodeCount``, never more than the core quota lets it add); a node idle for
``nodeIdleTimeBeforeScaleDown`` leaves unless ``minNodeCount`` or queued work needs it.

The work comes from two sources:

- **Runs** (the real source): :meth:`Cluster.submit` queues a run needing ``instance_count`` nodes. Runs are
  gang-scheduled first in, first out, as Azure ML's ``Queued`` status describes it ("in BatchAI the job is in
  queued state, while waiting for all required nodes to be ready", azure-ai-ml's ``JobStatus.QUEUED``): a run
  takes its nodes only when all of them are idle at once, and a later run never overtakes the head of the
  queue. Each of its nodes is then ``running`` with the run's id as ``runId`` (listNodes.json: a running node
  carries ``"runId"``, an idle one none). :meth:`Cluster.release` gives the nodes back (idle) when the run ends.
  A node of the run that is preempted or evicted takes the whole run back to the queue, in its place: its other
  nodes go idle and it waits for a full gang again (``Gang.requeues`` counts how often). ``ml/execution.py``
  runs the processes and watches for that.
- **The synthetic workload** ``busy`` set through ``/_emulator/arm/workload`` (kept for the tests that predate
  runs): that many further nodes are ``running`` under a made-up run id, with no process behind them.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

# Virtual seconds each phase takes; roughly what a real cluster shows, scaled by the clock's speed.
ALLOCATE_SECONDS = 30.0  # VM allocation before the node is listed (counted in targetNodeCount only)
PREPARE_SECONDS = 60.0  # image pull and setup: nodeState "preparing"
LEAVE_SECONDS = 30.0  # deallocation: nodeState "leaving"
PREEMPTED_SECONDS = 60.0  # a preempted node stays listed this long before it disappears

# Node states on the wire, plus "allocating" which is never shown.
ALLOCATING = "allocating"
PREPARING = "preparing"
IDLE = "idle"
RUNNING = "running"
LEAVING = "leaving"
PREEMPTED = "preempted"
UNUSABLE = "unusable"

_LIVE = (ALLOCATING, PREPARING, IDLE, RUNNING)  # nodes that count towards the target
_HOLDING_CORES = (ALLOCATING, PREPARING, IDLE, RUNNING, LEAVING, UNUSABLE)
_STATE_COUNT_KEYS = {
    IDLE: "idleNodeCount",
    RUNNING: "runningNodeCount",
    PREPARING: "preparingNodeCount",
    UNUSABLE: "unusableNodeCount",
    LEAVING: "leavingNodeCount",
    PREEMPTED: "preemptedNodeCount",
}


@dataclass(frozen=True)
class ScaleSettings:
    min_nodes: int
    max_nodes: int
    idle_seconds: float
    idle_text: str  # echoed as sent, e.g. "PT5M"

    def to_wire(self) -> dict[str, Any]:
        return {
            "maxNodeCount": self.max_nodes,
            "minNodeCount": self.min_nodes,
            "nodeIdleTimeBeforeScaleDown": self.idle_text,
        }


@dataclass
class Node:
    node_id: str
    index: int
    low_priority: bool
    state: str
    since: datetime
    run_id: str | None = None

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "nodeId": self.node_id,
            "privateIpAddress": f"10.0.{self.index // 250}.{4 + self.index % 250}",
            "publicIpAddress": f"20.50.{self.index // 250}.{10 + self.index % 250}",
            "port": 50000,
            "nodeState": self.state,
        }
        # An idle node has no runId key at all, as in examples/Compute/listNodes.json (not a null).
        if self.run_id is not None:
            wire["runId"] = self.run_id
        return wire


@dataclass
class Gang:
    """A run queued on the cluster: the nodes it needs, the ones it holds (all of them, or none)."""

    run_id: str
    size: int
    node_ids: list[str] = field(default_factory=list)
    requeues: int = 0  # times it lost a node (preemption, eviction) and went back to the queue


@dataclass
class Cluster:
    """``capacity(cluster)`` answers how many more vCPUs the quotas allow this cluster right now."""

    name: str
    vcpus: int
    low_priority: bool
    scale: ScaleSettings
    started: datetime
    capacity: Callable[[Cluster], int]
    nodes: list[Node] = field(default_factory=list)
    busy: int = 0
    runs: dict[str, Gang] = field(default_factory=dict)  # insertion order is queue order
    errors: list[dict[str, Any]] | None = None
    allocation_state: str = "Steady"
    allocation_changed: datetime | None = None
    _clock: datetime | None = None
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        self.allocation_changed = self.started

    # -- inputs -------------------------------------------------------------------------------------------------
    def set_scale(self, now: datetime, scale: ScaleSettings) -> None:
        self.advance(now)
        self.scale = scale
        self._reconcile(now)

    def set_busy(self, now: datetime, busy: int) -> None:
        self.advance(now)
        self.busy = max(0, busy)
        self._reconcile(now)

    def submit(self, now: datetime, run_id: str, size: int) -> Gang:
        """Queue a run needing ``size`` nodes (at most ``maxNodeCount``: the caller validates)."""
        self.advance(now)
        gang = self.runs.setdefault(run_id, Gang(run_id, size))
        if self.provisioned:  # otherwise the cluster's first advance places it
            self._reconcile(now)
        return gang

    def release(self, now: datetime, run_id: str) -> None:
        """The run ended (or was canceled): its nodes go idle, or it leaves the queue."""
        self.advance(now)
        gang = self.runs.pop(run_id, None)
        if gang is not None:
            for node in self._nodes_of(gang):
                node.state, node.since, node.run_id = IDLE, now, None
        if self.provisioned:
            self._reconcile(now)

    def holding(self, run_id: str) -> list[Node] | None:
        """The nodes a run holds, in node order (rank order), or ``None`` while it waits in the queue."""
        gang = self.runs.get(run_id)
        if gang is None or not gang.node_ids:
            return None
        return self._nodes_of(gang)

    def preempt(self, now: datetime, count: int) -> int:
        """Preempt up to ``count`` ready low-priority nodes; dedicated clusters are never preempted."""
        self.advance(now)
        if not self.low_priority:
            return 0
        victims = [n for n in self.nodes if n.state in (IDLE, RUNNING)][:count]
        for node in victims:
            node.state, node.since, node.run_id = PREEMPTED, now, None
        self._reconcile(now)
        return len(victims)

    # -- observation --------------------------------------------------------------------------------------------
    @property
    def provisioned(self) -> bool:
        """Whether the clock has reached the cluster's start (its create operation ended) at the last advance."""
        return self._clock is not None

    def advance(self, now: datetime) -> None:
        if self._clock is None:
            if now < self.started:
                return
            self._clock = self.started
            self._reconcile(self.started)
        while (due := self._next_event()) is not None and due <= now:
            self._apply_due(due)
            self._reconcile(due)
        self._clock = max(self._clock, now)

    def listed_nodes(self) -> list[Node]:
        return [n for n in self.nodes if n.state != ALLOCATING]

    def current_node_count(self) -> int:
        return len(self.listed_nodes())

    def target_node_count(self) -> int:
        return sum(1 for n in self.nodes if n.state in _LIVE)

    def node_state_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(_STATE_COUNT_KEYS.values(), 0)
        for node in self.listed_nodes():
            counts[_STATE_COUNT_KEYS[node.state]] += 1
        return counts

    def cores_in_use(self) -> int:
        return self.vcpus * sum(1 for n in self.nodes if n.state in _HOLDING_CORES)

    # -- the simulation -----------------------------------------------------------------------------------------
    def _demand(self) -> int:
        return self.busy + sum(g.size for g in self.runs.values())

    def _desired(self) -> int:
        return min(self.scale.max_nodes, max(self.scale.min_nodes, self._demand()))

    def _next_event(self) -> datetime | None:
        times = [self._transition_time(n) for n in self.nodes]
        times += self._idle_timeouts()
        due = [t for t in times if t is not None]
        return min(due) if due else None

    def _transition_time(self, node: Node) -> datetime | None:
        duration = {
            ALLOCATING: ALLOCATE_SECONDS,
            PREPARING: PREPARE_SECONDS,
            LEAVING: LEAVE_SECONDS,
            PREEMPTED: PREEMPTED_SECONDS,
        }.get(node.state)
        return None if duration is None else node.since + timedelta(seconds=duration)

    def _idle_candidates(self) -> list[Node]:
        """The idle nodes that may leave: the longest idle first, as many as exceed what is needed."""
        live = sum(1 for n in self.nodes if n.state in _LIVE)
        excess = live - self._desired()
        idle = sorted((n for n in self.nodes if n.state == IDLE), key=lambda n: n.since)
        return idle[: max(0, excess)]

    def _idle_timeouts(self) -> list[datetime]:
        wait = timedelta(seconds=self.scale.idle_seconds)
        return [n.since + wait for n in self._idle_candidates()]

    def _apply_due(self, now: datetime) -> None:
        for node in list(self.nodes):
            due = self._transition_time(node)
            if due is None or due > now:
                continue
            if node.state == ALLOCATING:
                node.state, node.since = PREPARING, due
            elif node.state == PREPARING:
                node.state, node.since = IDLE, due
            else:  # leaving or preempted: gone
                self.nodes.remove(node)
        wait = timedelta(seconds=self.scale.idle_seconds)
        for node in self._idle_candidates():
            if node.since + wait <= now:
                node.state, node.since = LEAVING, node.since + wait

    def _reconcile(self, now: datetime) -> None:
        self._assign_work(now)
        self._resize(now)
        self._assign_work(now)
        busy_transitions = any(n.state in (ALLOCATING, PREPARING, LEAVING) for n in self.nodes)
        state = "Resizing" if busy_transitions else "Steady"
        if state != self.allocation_state:
            self.allocation_state, self.allocation_changed = state, now

    def _assign_work(self, now: datetime) -> None:
        self._break_gangs(now)
        self._place_gangs(now)
        self._place_synthetic(now)

    def _nodes_of(self, gang: Gang) -> list[Node]:
        wanted = set(gang.node_ids)
        return sorted((n for n in self.nodes if n.node_id in wanted), key=lambda n: gang.node_ids.index(n.node_id))

    def _break_gangs(self, now: datetime) -> None:
        """A run that lost a node (preempted, evicted) goes back to the queue; its other nodes go idle."""
        for gang in self.runs.values():
            if not gang.node_ids:
                continue
            held = self._nodes_of(gang)
            if len(held) == gang.size and all(n.state == RUNNING and n.run_id == gang.run_id for n in held):
                continue
            for node in held:
                if node.state == RUNNING and node.run_id == gang.run_id:
                    node.state, node.since, node.run_id = IDLE, now, None
            gang.node_ids = []
            gang.requeues += 1

    def _place_gangs(self, now: datetime) -> None:
        """First in, first out: the head of the queue takes its nodes when all are idle; nobody overtakes it."""
        for gang in self.runs.values():
            if gang.node_ids:
                continue
            idle = sorted((n for n in self.nodes if n.state == IDLE), key=lambda n: n.index)
            if len(idle) < gang.size:
                return
            for node in idle[: gang.size]:
                node.state, node.since, node.run_id = RUNNING, now, gang.run_id
            gang.node_ids = [n.node_id for n in idle[: gang.size]]

    def _place_synthetic(self, now: datetime) -> None:
        """The ``/_emulator/arm/workload`` nodes: running under a made-up run id, no process behind them."""
        running = [n for n in self.nodes if n.state == RUNNING and n.run_id not in self.runs]
        idle = sorted((n for n in self.nodes if n.state == IDLE), key=lambda n: n.since, reverse=True)
        for node in running[self.busy :]:
            node.state, node.since, node.run_id = IDLE, now, None
        for node in idle[: max(0, self.busy - len(running))]:
            node.state, node.since = RUNNING, now
            node.run_id = f"{self.name}_{int(now.timestamp())}_{node.index}"

    def _resize(self, now: datetime) -> None:
        live = [n for n in self.nodes if n.state in _LIVE]
        desired = self._desired()
        if len(live) < desired:
            affordable = self.capacity(self) // self.vcpus if self.vcpus else desired
            missing = min(desired - len(live), max(0, affordable))
            for _ in range(missing):
                index = next(self._ids)
                suffix = "p" if self.low_priority else "d"
                digest = hashlib.sha256(f"{self.name}/{index}".encode()).hexdigest()[:32]
                node_id = f"tvmps_{digest}_{suffix}"
                self.nodes.append(Node(node_id, index, self.low_priority, ALLOCATING, now))
            short = desired - len(live) - missing
            self.errors = [_quota_error(self.vcpus, short)] if short > 0 else None
        elif len(live) > self.scale.max_nodes:
            # A lowered maxNodeCount evicts at once: unallocated nodes first, then idle, then busy ones.
            order = {ALLOCATING: 0, PREPARING: 1, IDLE: 2, RUNNING: 3}
            for node in sorted(live, key=lambda n: order[n.state])[: len(live) - self.scale.max_nodes]:
                if node.state == ALLOCATING:
                    self.nodes.remove(node)
                else:
                    node.state, node.since, node.run_id = LEAVING, now, None
            self.errors = None
        else:
            self.errors = None


def _quota_error(vcpus: int, short: int) -> dict[str, Any]:
    return {
        "error": {
            "code": "QuotaExceeded",
            "message": f"Operation results in exceeding quota limits: {short} more node(s) of {vcpus} vCPUs "
            "could not be allocated. Request a quota increase for this VM family.",
        }
    }
