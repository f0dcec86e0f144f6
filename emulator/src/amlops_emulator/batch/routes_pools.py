"""Pool, node and node-count operations (cases B1-B4, B14)."""

from __future__ import annotations

from aiohttp import web

from amlops_emulator.batch import pools
from amlops_emulator.batch.model import Account, Pool, pool_defaults
from amlops_emulator.batch.responses import (
    accepted,
    account,
    account_url,
    check_preconditions,
    created,
    entity,
    json_response,
    page,
    read_json,
    service,
    updated,
)
from amlops_emulator.batch.validation import durations, integer, not_emulated, require, require_id
from amlops_emulator.batch.wire import JSON, BatchError, already_exists, not_found

MAX_NODES = 1000  # per pool and priority: plenty for an emulator, small enough to catch runaway targets


def routes() -> list[web.RouteDef]:
    base = "/{account}/pools"
    return [
        web.post(base, create_pool),
        web.get(base, list_pools, allow_head=False),
        web.get(base + "/{pool}", get_pool),  # HEAD too: pool_exists
        web.patch(base + "/{pool}", update_pool),
        web.post(base + "/{pool}/updateproperties", replace_pool_properties),
        web.delete(base + "/{pool}", delete_pool),
        web.post(base + "/{pool}/resize", resize_pool),
        web.post(base + "/{pool}/stopresize", stop_pool_resize),
        web.get(base + "/{pool}/nodes", list_nodes, allow_head=False),
        web.get(base + "/{pool}/nodes/{node}", get_node, allow_head=False),
        web.get("/{account}/nodecounts", list_pool_node_counts, allow_head=False),
    ]


def _pool(acct: Account, request: web.Request) -> Pool:
    pool = acct.pools.get(request.match_info["pool"])
    if pool is None:
        raise not_found("Pool")
    return pool


def _pool_url(request: web.Request, pool: Pool) -> str:
    return f"{account_url(request)}/pools/{pool.id}"


def _targets(body: JSON, pool: Pool | None) -> tuple[int, int]:
    dedicated = integer(body, "targetDedicatedNodes", pool.target_dedicated if pool else 0, 0, MAX_NODES)
    low = integer(body, "targetLowPriorityNodes", pool.target_low_priority if pool else 0, 0, MAX_NODES)
    return dedicated, low


def _require_active(pool: Pool) -> None:
    if pool.state == "deleting":
        raise BatchError(409, "PoolBeingDeleted", "The specified pool has been marked for deletion.")


async def create_pool(request: web.Request) -> web.Response:
    acct, now = account(request), service(request).clock.now()
    body = await read_json(request)
    pool_id = require_id(body)
    require(body, "vmSize")
    if body.get("enableAutoScale"):
        raise not_emulated("enableAutoScale", body["enableAutoScale"])
    integer(body, "taskSlotsPerNode", 1, 1, 256)
    durations(body, "resizeTimeout")
    if pool_id in acct.pools:
        _require_active(acct.pools[pool_id])
        raise already_exists("Pool")
    pool = Pool(spec=pool_defaults(body), created=now, target_dedicated=0, target_low_priority=0)
    pool.resize_timeout = str(body.get("resizeTimeout") or "PT15M")
    pool.touch(now)
    dedicated, low = _targets(body, None)
    if dedicated or low:
        pools.start_resize(pool, dedicated, low, now)
    acct.pools[pool_id] = pool
    return created(_pool_url(request, pool), pool.etag, now)


async def list_pools(request: web.Request) -> web.Response:
    acct, url = account(request), account_url(request)
    items = list(acct.pools.values())
    return page(request, items, lambda p: p.to_wire(f"{url}/pools/{p.id}"), f"{url}/$metadata#pools")


async def get_pool(request: web.Request) -> web.Response:
    pool = _pool(account(request), request)
    check_preconditions(request, pool.etag, pool.last_modified or pool.created)
    url = account_url(request)
    return entity(pool.to_wire(_pool_url(request, pool)), f"{url}/$metadata#pools/@Element")


# Properties an update may change; everything else is fixed at creation.
_UPDATABLE = ("startTask", "metadata", "applicationPackageReferences", "targetNodeCommunicationMode", "displayName")


async def update_pool(request: web.Request) -> web.Response:
    """PATCH: only the properties present change."""
    pool, now = _pool(account(request), request), service(request).clock.now()
    check_preconditions(request, pool.etag, pool.last_modified or pool.created)
    body = await read_json(request)
    pool.spec.update({k: body[k] for k in _UPDATABLE if k in body})
    pool.touch(now)
    return updated(_pool_url(request, pool), pool.etag, now)


async def replace_pool_properties(request: web.Request) -> web.Response:
    """updateproperties: the updatable properties are replaced, absent ones cleared (204)."""
    pool, now = _pool(account(request), request), service(request).clock.now()
    body = await read_json(request)
    for name in _UPDATABLE:
        if name in body:
            pool.spec[name] = body[name]
        elif name != "displayName":
            pool.spec.pop(name, None)
    pool.touch(now)
    return updated(_pool_url(request, pool), pool.etag, now, status=204)


async def delete_pool(request: web.Request) -> web.Response:
    svc, acct = service(request), account(request)
    pool, now = _pool(acct, request), svc.clock.now()
    check_preconditions(request, pool.etag, pool.last_modified or pool.created)
    _require_active(pool)
    leaving = pools.start_delete(pool, now)
    svc.agent.evict(acct, leaving, "The node was removed because its pool is being deleted.")
    return accepted(_pool_url(request, pool), pool.etag, now)


async def resize_pool(request: web.Request) -> web.Response:
    svc, acct = service(request), account(request)
    pool, now = _pool(acct, request), svc.clock.now()
    check_preconditions(request, pool.etag, pool.last_modified or pool.created)
    body = await read_json(request)
    _require_active(pool)
    if pool.allocation_state != "steady":
        raise BatchError(409, "PoolNotSteady", "The specified pool is not in a steady allocation state.")
    dedicated, low = _targets(body, pool)
    option = body.get("nodeDeallocationOption", "requeue")
    if option not in ("requeue", "terminate", "taskcompletion", "retaineddata"):
        raise not_emulated("nodeDeallocationOption", option)
    if body.get("resizeTimeout"):
        durations(body, "resizeTimeout")
        pool.resize_timeout = str(body["resizeTimeout"])
    leaving = pools.start_resize(pool, dedicated, low, now)
    # requeue, taskcompletion and retaineddata all put the tasks back; terminate would end them.
    svc.agent.evict(acct, leaving, "The node was removed from the pool by a resize.")
    return accepted(_pool_url(request, pool) + "/resize", pool.etag, now)


async def stop_pool_resize(request: web.Request) -> web.Response:
    pool, now = _pool(account(request), request), service(request).clock.now()
    check_preconditions(request, pool.etag, pool.last_modified or pool.created)
    _require_active(pool)
    if pool.allocation_state == "resizing":
        pools.stop_resize(pool, now)
    return accepted(_pool_url(request, pool) + "/stopresize", pool.etag, now)


async def list_nodes(request: web.Request) -> web.Response:
    pool = _pool(account(request), request)
    pool_url = _pool_url(request, pool)
    vm_size = str(pool.spec["vmSize"])
    return page(
        request,
        list(pool.nodes.values()),
        lambda n: n.to_wire(pool_url, vm_size),
        f"{account_url(request)}/$metadata#nodes",
    )


async def get_node(request: web.Request) -> web.Response:
    pool = _pool(account(request), request)
    node = pool.nodes.get(request.match_info["node"])
    if node is None:
        raise not_found("Node")
    body = node.to_wire(_pool_url(request, pool), str(pool.spec["vmSize"]))
    # Nodes carry no ETag, so not the entity helper.
    return json_response({"odata.metadata": f"{account_url(request)}/$metadata#nodes/@Element", **body})


async def list_pool_node_counts(request: web.Request) -> web.Response:
    acct = account(request)

    def render(pool: Pool) -> JSON:
        return {
            "poolId": pool.id,
            "dedicated": pools.node_counts(pool, dedicated=True),
            "lowPriority": pools.node_counts(pool, dedicated=False),
        }

    return page(request, list(acct.pools.values()), render, f"{account_url(request)}/$metadata#poolnodecounts")
