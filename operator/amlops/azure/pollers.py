"""One shared poller per workspace: a single list call refreshes every compute of the workspace.

Each observe asks for an entry no older than ``max_age`` (short while its resource converges, long when
steady). Concurrent askers share one refresh (single flight); a write marks its compute's entry stale, so the
next ask for that compute refreshes, but never more often than the floor. Other computes keep their entries:
a thousand computes created at once do not each force a listing on the others. With N resources in a steady
workspace that is one list call per workspace per poll interval instead of N GETs.

The floor stretches with the workspace: a listing is never repeated sooner than ``LIST_DUTY`` times what the
last one took, so a workspace of a thousand computes (a listing of twenty pages) is not re-listed every
second while they converge, which would cost more than it tells; nor sooner than its pages take of the reads
listings may use (``list_reads_per_second``: a share of amlops' share of ARM's read bucket). Azure lists a page in
a tenth of a second or more, the emulator far quicker, and ten thousand computes are two hundred pages: listed
every poll interval, they alone would take every read ARM allows the subscription.

Entries are kept packed (``amlops.compact``): ten thousand listed computes held ≈ 60 MB as dicts, 7 MB packed.
They are packed page by page as a listing arrives (:class:`Listing`), so the pages of a listing are not all held
as dicts either: at ten thousand computes that was 60 MB of small objects every listing, which CPython keeps (its
arenas go back only once empty) in the gaps between what the operator holds for good.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from amlops.compact import pack, unpack

JSON = dict[str, Any]


class Listing:
    """A listing's entries by lower-case name, each packed as its page arrives, and how many requests (pages) it
    took."""

    def __init__(self) -> None:
        self.entries: dict[str, bytes] = {}
        self.requests = 0

    def add_page(self, items: Iterable[JSON]) -> None:
        self.requests += 1
        for item in items:
            self.entries[str(item.get("name", "")).lower()] = pack(item)

    @classmethod
    def of(cls, items: Iterable[JSON]) -> Listing:
        """A listing read whole (azure-ai-ml's pager does not say how many pages it read): one request."""
        listing = cls()
        listing.add_page(items)
        return listing


Lister = Callable[[], Awaitable[Listing]]
# A workspace is listed at most half the time: more often and the listing itself is most of the work; less
# often (a quarter was tried) and a thousand computes converging at once waited seconds for their news.
LIST_DUTY = 2.0


class WorkspacePoller:
    def __init__(
        self,
        lister: Lister,
        floor: float,
        clock: Callable[[], float] = time.monotonic,
        list_reads_per_second: float | None = None,
    ) -> None:
        self._lister = lister
        self._floor = floor
        self._clock = clock
        self._list_reads_per_second = list_reads_per_second
        self._computes: dict[str, bytes] = {}  # name → the listed (or read) body, packed
        self._fetched_at: float | None = None
        self._took = 0.0
        self._requests = 0  # what the last listing cost
        self._written: dict[str, float] = {}  # compute name → when amlops last wrote it
        self._read: dict[str, tuple[float, bytes | None]] = {}  # compute name → when a GET read it, its body packed
        self._lock = asyncio.Lock()
        self.refreshes = 0

    def invalidate(self, name: str) -> None:
        """amlops just wrote compute ``name``: a listing that started before now does not show it."""
        self._written[name.lower()] = self._clock()

    def remember(self, name: str, body: JSON | None) -> None:
        """A GET of compute ``name`` just answered ``body`` (None: absent): it replaces the listed entry, and a
        listing that started before the GET does not bring the older state back."""
        key = name.lower()
        packed = None if body is None else pack(body)
        self._read[key] = (self._clock(), packed)
        self._set(key, packed)

    def _set(self, key: str, packed: bytes | None) -> None:
        if packed is None:
            self._computes.pop(key, None)
        else:
            self._computes[key] = packed

    def spacing(self) -> float:
        """The least time between two listings: the floor, stretched by what the last one took and cost."""
        by_budget = self._requests / self._list_reads_per_second if self._list_reads_per_second else 0.0
        return max(self._floor, LIST_DUTY * self._took, by_budget)

    def _fresh(self, name: str, max_age: float) -> bool:
        if self._fetched_at is None:
            return False
        age = self._clock() - self._fetched_at
        floor = self.spacing()
        if self._written.get(name, -1.0) >= self._fetched_at and age >= floor:
            return False
        return age <= max(max_age, floor)

    async def get(self, name: str, max_age: float) -> tuple[bool, JSON | None]:
        """(whether the workspace listing is known, the compute's body or None when absent from it)."""
        key = name.lower()
        if not self._fresh(key, max_age):
            async with self._lock:
                if not self._fresh(key, max_age):  # another asker may have refreshed while we waited
                    await self._refresh()
        packed = self._computes.get(key)
        return True, None if packed is None else unpack(packed)

    async def items(self, max_age: float) -> list[JSON]:
        """Every entry of the workspace listing, refreshed first when it is older than ``max_age`` (never more
        often than the floor): for a reader of the whole listing (an AmlCompute's activeRuns)."""
        floor = self.spacing()
        if self._fetched_at is None or self._clock() - self._fetched_at > max(max_age, floor):
            async with self._lock:
                if self._fetched_at is None or self._clock() - self._fetched_at > max(max_age, floor):
                    await self._refresh()
        return [unpack(packed) for packed in self._computes.values()]

    async def _refresh(self) -> None:
        started = self._clock()
        listing = await self._lister()
        self._computes = listing.entries
        self._fetched_at = started
        self._took = self._clock() - started
        self._requests = listing.requests
        # Writes the new listing has seen need no more tracking; GETs made while it ran are newer than it.
        self._written = {k: t for k, t in self._written.items() if t >= started}
        self._read = {k: read for k, read in self._read.items() if read[0] >= started}
        for key, (_, body) in self._read.items():
            self._set(key, body)
        self.refreshes += 1


class Pollers:
    """Pollers by (credential key, workspace ARM id); created on first use."""

    def __init__(self, floor: float, list_reads_per_second: float | None = None) -> None:
        self._floor = floor
        self._list_reads_per_second = list_reads_per_second
        self._pollers: dict[tuple[str, str], WorkspacePoller] = {}

    def forget(self, key: tuple[str, str]) -> None:
        """No object reads this workspace with this credential any more."""
        self._pollers.pop(key, None)

    def __len__(self) -> int:
        return len(self._pollers)

    def get(self, key: tuple[str, str], lister: Lister) -> WorkspacePoller:
        poller = self._pollers.get(key)
        if poller is None:
            poller = self._pollers[key] = WorkspacePoller(
                lister, self._floor, list_reads_per_second=self._list_reads_per_second
            )
        return poller
