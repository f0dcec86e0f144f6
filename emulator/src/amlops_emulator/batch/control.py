"""Batch-specific control routes under ``/_emulator/batch/``: what tests and the demo do to the emulator
that no Batch API can (preempt a Spot node) and what they read about the node agent.

The shared ``/_emulator/`` routes (faults, clock, reset, stats) belong to the platform middleware.
"""

from __future__ import annotations

from aiohttp import web

from amlops_emulator.batch import pools
from amlops_emulator.batch.responses import json_response, service
from amlops_emulator.batch.wire import BatchError, not_found


def routes() -> list[web.RouteDef]:
    return [
        web.post("/_emulator/batch/{account}/pools/{pool}/nodes/{node}/preempt", preempt_node),
        web.get("/_emulator/batch/stats", stats, allow_head=False),
    ]


async def preempt_node(request: web.Request) -> web.Response:
    """Preempt a low-priority (Spot) node: its running tasks are requeued, as the service does."""
    svc = service(request)
    acct = svc.accounts.get(request.match_info["account"])
    if acct is None:
        raise BatchError(404, "AccountNotFound", "The specified account does not exist.")
    svc.agent.refresh(acct)
    pool = acct.pools.get(request.match_info["pool"])
    if pool is None:
        raise not_found("Pool")
    node = pool.nodes.get(request.match_info["node"])
    if node is None:
        raise not_found("Node")
    if node.dedicated:
        raise BatchError(409, "NodeNotPreemptible", "Only low-priority (Spot) nodes can be preempted.")
    requeued = sorted(node.running)
    svc.agent.evict(acct, [node], "The node was preempted.")
    pools.preempt(node, svc.clock.now())
    return json_response({"poolId": pool.id, "nodeId": node.id, "state": node.state, "requeuedTasks": requeued})


async def stats(request: web.Request) -> web.Response:
    svc = service(request)
    accounts = {
        name: {
            "pools": len(acct.pools),
            "nodes": sum(len(p.nodes) for p in acct.pools.values()),
            "jobs": len(acct.jobs),
            "tasks": sum(len(j.tasks) for j in acct.jobs.values()),
        }
        for name, acct in svc.accounts.items()
    }
    return json_response({"nodeAgent": svc.agent.stats.to_wire(svc.agent.live_processes), "accounts": accounts})
