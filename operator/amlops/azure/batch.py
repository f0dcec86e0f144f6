"""The Azure Batch data-plane adapter for pools: the aio ``BatchClient``, plain dicts out.

Every error leaves this module as the engine's RetryableError / TerminalError (Batch answers OData errors:
``PoolExists``, ``PoolNotFound``, ``AuthenticationFailed``...).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from azure.batch import models
from azure.batch.aio import BatchClient
from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError

from amlops.azure.errors import azure_errors, error_code

JSON = dict[str, Any]


async def list_pools(client: BatchClient) -> list[JSON]:
    with azure_errors():
        return [dict(pool.as_dict()) async for pool in client.list_pools()]


async def pool_node_counts(client: BatchClient) -> dict[str, JSON]:
    """Per-pool node counts by state: one ``list_pool_node_counts`` call for the whole account."""
    with azure_errors():
        return {str(c.pool_id): dict(c.as_dict()) async for c in client.list_pool_node_counts()}


async def get_pool(client: BatchClient, pool_id: str) -> JSON | None:
    """One pool (state, metadata, targets), or None when the account has no such pool."""
    with azure_errors():
        try:
            pool = await client.get_pool(pool_id)
        except ResourceNotFoundError:
            return None
    return dict(pool.as_dict())


async def set_pool_metadata(client: BatchClient, pool_id: str, metadata: list[JSON], etag: str | None) -> None:
    """Replace the pool's metadata (Batch's PATCH replaces the list whole; the rest of the pool is untouched),
    only if the pool is still as read (``etag``): two adopters cannot both believe they won (412 → retry)."""
    items = [models.BatchMetadataItem(name=str(m["name"]), value=str(m["value"])) for m in metadata]
    options = models.BatchPoolUpdateOptions(metadata=items)
    condition = MatchConditions.IfNotModified if etag else None
    with azure_errors():
        await client.update_pool(pool_id, options, etag=etag, match_condition=condition)


async def create_if_absent(create: Callable[[], Awaitable[None]], exists_code: str) -> bool:
    """Run a Batch create; False when the entity exists already (Batch creates are idempotent by id for us)."""
    with azure_errors():
        try:
            await create()
        except ResourceExistsError:
            return False
        except HttpResponseError as e:
            if error_code(e) == exists_code:
                return False
            raise
    return True


async def create_pool(client: BatchClient, pool: JSON) -> bool:
    """Create the pool; False when a pool of that id exists already."""
    return await create_if_absent(lambda: client.create_pool(models.BatchPoolCreateOptions(pool)), "PoolExists")


async def resize_pool(client: BatchClient, pool_id: str, dedicated: int, low_priority: int) -> None:
    options = models.BatchPoolResizeOptions(target_dedicated_nodes=dedicated, target_low_priority_nodes=low_priority)
    # Start the resize and return: the pool's allocationState tells the rest on the next poll.
    with azure_errors():
        await client.begin_resize_pool(pool_id, options, polling_interval=0)


async def delete_pool(client: BatchClient, pool_id: str) -> None:
    with azure_errors():
        try:
            await client.begin_delete_pool(pool_id, polling_interval=0)
        except ResourceNotFoundError:
            return
