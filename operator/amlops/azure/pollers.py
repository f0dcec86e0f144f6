"""One shared poller per workspace: a single list call refreshes every compute of the workspace.

Each observe asks for an entry no older than ``max_age`` (short while its resource converges, long when
steady). Concurrent askers share one refresh (single flight); writes mark the cache dirty so the next ask
refreshes, but never more often than the floor. With N resources in a steady workspace that is one list
call per workspace per poll interval instead of N GETs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

JSON = dict[str, Any]
Lister = Callable[[], Awaitable[list[JSON]]]


class WorkspacePoller:
    def __init__(self, lister: Lister, floor: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._lister = lister
        self._floor = floor
        self._clock = clock
        self._computes: dict[str, JSON] = {}
        self._fetched_at: float | None = None
        self._dirty = False
        self._lock = asyncio.Lock()
        self.refreshes = 0

    def invalidate(self) -> None:
        self._dirty = True

    def _fresh(self, max_age: float) -> bool:
        if self._fetched_at is None:
            return False
        age = self._clock() - self._fetched_at
        if self._dirty and age >= self._floor:
            return False
        return age <= max(max_age, self._floor)

    async def get(self, name: str, max_age: float) -> tuple[bool, JSON | None]:
        """(whether the workspace listing is known, the compute's body or None when absent from it)."""
        if not self._fresh(max_age):
            async with self._lock:
                if not self._fresh(max_age):  # another asker may have refreshed while we waited
                    await self._refresh()
        return True, self._computes.get(name.lower())

    async def _refresh(self) -> None:
        self._dirty = False
        started = self._clock()
        items = await self._lister()
        self._computes = {str(item.get("name", "")).lower(): item for item in items}
        self._fetched_at = started
        self.refreshes += 1


class Pollers:
    """Pollers by (credential key, workspace ARM id); created on first use."""

    def __init__(self, floor: float) -> None:
        self._floor = floor
        self._pollers: dict[tuple[str, str], WorkspacePoller] = {}

    def get(self, key: tuple[str, str], lister: Lister) -> WorkspacePoller:
        poller = self._pollers.get(key)
        if poller is None:
            poller = self._pollers[key] = WorkspacePoller(lister, self._floor)
        return poller
