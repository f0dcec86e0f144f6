"""Pool allocation simulated on the emulator's virtual clock: resize, stop-resize, delete, node start-up.

The real service allocates VMs in minutes; these durations are virtual seconds, so a test runs them in
milliseconds with a fast clock, or step by step with ``VirtualClock.advance``. Functions here only change
pool and node state; the node agent decides what happens to the tasks of a node that leaves or is preempted
(every function that takes nodes away returns them).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from amlops_emulator.batch.model import Node, Pool

RESIZE_SECONDS = 90.0  # allocation of the VMs a resize asks for
NODE_START_SECONDS = 60.0  # starting → idle (boot, node agent start)
STOP_RESIZE_SECONDS = 10.0  # stopping → steady
DELETE_SECONDS = 30.0  # deleting → gone
PREEMPTION_RECOVERY_SECONDS = 300.0  # a preempted Spot node is allocated again


def start_resize(pool: Pool, dedicated: int, low_priority: int, now: datetime) -> list[Node]:
    """Begin a resize; returns the nodes that leave the pool now (their tasks must be requeued)."""
    pool.target_dedicated, pool.target_low_priority = dedicated, low_priority
    pool.set_allocation_state("resizing", now)
    pool.transition_at = now + timedelta(seconds=RESIZE_SECONDS)
    pool.touch(now)
    return _mark_excess_leaving(pool, now)


def stop_resize(pool: Pool, now: datetime) -> None:
    """Stop a resize: nodes not yet allocated never come; targets keep their values (as in the recording)."""
    pool.set_allocation_state("stopping", now)
    pool.transition_at = now + timedelta(seconds=STOP_RESIZE_SECONDS)
    pool.touch(now)


def start_delete(pool: Pool, now: datetime) -> list[Node]:
    pool.state, pool.state_since = "deleting", now
    pool.transition_at = now + timedelta(seconds=DELETE_SECONDS)
    pool.touch(now)
    leaving = [n for n in pool.nodes.values() if n.state != "leavingpool"]
    for node in leaving:
        node.set_state("leavingpool", now)
    return leaving


def preempt(node: Node, now: datetime) -> None:
    node.set_state("preempted", now)
    node.recover_at = now + timedelta(seconds=PREEMPTION_RECOVERY_SECONDS)


def advance(pool: Pool, now: datetime) -> bool:
    """Apply every transition due by ``now``; True when the pool has finished deleting."""
    due = pool.transition_at is not None and now >= pool.transition_at
    if pool.state == "deleting":
        return due
    if due and pool.allocation_state == "resizing":
        assert pool.transition_at is not None
        # Nodes were allocated when the resize finished, however late this look at the clock comes.
        _remove_leaving(pool)
        _allocate(pool, pool.transition_at)
        pool.set_allocation_state("steady", now)
        pool.transition_at = None
        pool.touch(now)
    elif due and pool.allocation_state == "stopping":
        _remove_leaving(pool)
        pool.set_allocation_state("steady", now)
        pool.transition_at = None
        pool.touch(now)
    for node in pool.nodes.values():
        if node.state == "preempted" and node.recover_at is not None and now >= node.recover_at:
            recovered = node.recover_at
            node.set_state("starting", recovered)
            node.recover_at, node.ready_at = None, recovered + timedelta(seconds=NODE_START_SECONDS)
        if node.state == "starting" and node.ready_at is not None and now >= node.ready_at:
            node.set_state("running" if node.running else "idle", now)
            node.ready_at = None
    return False


def _allocate(pool: Pool, now: datetime) -> None:
    for dedicated, target in ((True, pool.target_dedicated), (False, pool.target_low_priority)):
        present = sum(1 for n in _staying(pool) if n.dedicated == dedicated)
        for _ in range(max(0, target - present)):
            pool.node_seq += 1
            node_id = f"tvmps_{pool.node_seq:064x}_{'d' if dedicated else 'p'}"
            pool.nodes[node_id] = Node(
                id=node_id,
                pool_id=pool.id,
                dedicated=dedicated,
                slots=pool.slots_per_node,
                state="starting",
                state_since=now,
                allocation_time=now,
                ip_address=f"10.0.{pool.node_seq // 250}.{pool.node_seq % 250 + 4}",
                ready_at=now + timedelta(seconds=NODE_START_SECONDS),
            )


def _mark_excess_leaving(pool: Pool, now: datetime) -> list[Node]:
    leaving: list[Node] = []
    for dedicated, target in ((True, pool.target_dedicated), (False, pool.target_low_priority)):
        staying = [n for n in _staying(pool) if n.dedicated == dedicated]
        # Idle and not-yet-ready nodes go first, the busiest last, so the fewest tasks are disturbed.
        staying.sort(key=lambda n: (n.schedulable, len(n.running)))
        for node in staying[: max(0, len(staying) - target)]:
            node.set_state("leavingpool", now)
            leaving.append(node)
    return leaving


def _staying(pool: Pool) -> list[Node]:
    return [n for n in pool.nodes.values() if n.state != "leavingpool"]


def _remove_leaving(pool: Pool) -> None:
    for node_id in [n.id for n in pool.nodes.values() if n.state == "leavingpool"]:
        del pool.nodes[node_id]


NODE_COUNT_STATES = (
    "creating",
    "idle",
    "offline",
    "preempted",
    "rebooting",
    "reimaging",
    "running",
    "starting",
    "startTaskFailed",
    "leavingPool",
    "unknown",
    "unusable",
    "waitingForStartTask",
    "deallocated",
    "deallocating",
    "upgradingOS",
)


def node_counts(pool: Pool, dedicated: bool) -> dict[str, int]:
    """``BatchNodeCounts``: the wire keys are camelCase while node states are lower-case."""
    by_state = {name.lower(): name for name in NODE_COUNT_STATES}
    counts = dict.fromkeys(NODE_COUNT_STATES, 0)
    for node in pool.nodes.values():
        if node.dedicated == dedicated:
            counts[by_state.get(node.state, "unknown")] += 1
    counts["total"] = sum(counts.values())
    return counts
