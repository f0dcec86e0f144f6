"""Per-workspace and per-location answers that change rarely (a workspace's location, the VM sizes) or slowly
(usages), read once for every object that asks: a thousand resources created at once make one vmSizes call, not
a thousand. One instance per operator (``AzureClients.locations``), shared by every kind that reads them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from amlops.azure.ml import JSON, MlClient, WorkspaceId
from amlops.settings import Settings


class TtlCache:
    """One value per key for ``ttl`` seconds; concurrent askers of a missing key wait for one load."""

    def __init__(self, ttl: float) -> None:
        self._ttl = ttl
        self._items: dict[str, tuple[float, Any]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def _fresh(self, key: str) -> Any | None:
        hit = self._items.get(key)
        return hit[1] if hit and time.monotonic() - hit[0] < self._ttl else None

    async def get(self, key: str, load: Callable[[], Awaitable[Any]]) -> Any:
        if (value := self._fresh(key)) is not None:
            return value
        async with self._locks.setdefault(key, asyncio.Lock()):
            if (value := self._fresh(key)) is not None:
                return value
            value = await load()
            self._items[key] = (time.monotonic(), value)
            return value


class LocationReads:
    def __init__(self, settings: Settings) -> None:
        self._sizes = TtlCache(settings.vm_size_cache_seconds)
        self._usages = TtlCache(settings.poll_ceiling_seconds)
        self._locations = TtlCache(settings.vm_size_cache_seconds)
        # (usages key, filter) → (the full list, the rows kept), filtered once per reading
        self._filtered: dict[tuple[str, Callable[[JSON], bool]], tuple[list[JSON], list[JSON]]] = {}

    async def workspace_location(self, ml: MlClient, ws: WorkspaceId) -> str:
        return str(await self._locations.get(ws.arm_id, lambda: ml.workspace_location(ws)))

    async def vm_sizes(self, ml: MlClient, location: str) -> JSON:
        """The raw vmSizes answer (``amlcompute_map.vm_sizes_of`` reads its list under either key)."""
        body: JSON = await self._sizes.get(location, lambda: ml.vm_sizes(location))
        return body

    async def usages(self, ml: MlClient, location: str) -> list[JSON]:
        rows: list[JSON] = await self._usages.get(f"{ml.subscription_id}/{location}", lambda: ml.usages(location))
        return rows

    async def usages_where(self, ml: MlClient, location: str, keep: Callable[[JSON], bool]) -> list[JSON]:
        """The location's usage rows that ``keep``, filtered once per reading. Azure lists a row per family for the
        subscription, each workspace and each compute (``ListUsages.json``): with thousands of computes, an
        AmlCompute's quota check scanned thousands of rows on every pass, most of a steady pass's CPU (py-spy,
        2,000 objects)."""
        key = (f"{ml.subscription_id}/{location}", keep)
        rows = await self.usages(ml, location)
        filtered = self._filtered.get(key)
        if filtered is None or filtered[0] is not rows:  # a new reading
            filtered = self._filtered[key] = (rows, [row for row in rows if keep(row)])
        return filtered[1]
