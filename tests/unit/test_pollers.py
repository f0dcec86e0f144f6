"""The shared workspace poller: single flight, freshness, the floor and its stretch with slow listings."""

from __future__ import annotations

import asyncio

import pytest

from amlops.azure.pollers import LIST_DUTY, Listing, WorkspacePoller
from amlops.compact import unpack

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Workspace:
    """A lister over computes that takes ``took`` seconds of the fake clock per listing."""

    def __init__(self, clock: Clock, took: float = 0.0) -> None:
        self.clock, self.took, self.calls = clock, took, 0
        self.computes: list[dict[str, object]] = [{"name": "CPU-1", "properties": {}}]

    async def list(self) -> Listing:
        self.calls += 1
        await asyncio.sleep(0)
        self.clock.now += self.took
        return Listing.of(self.computes)


async def test_concurrent_askers_share_one_listing_and_names_ignore_case() -> None:
    clock = Clock()
    workspace = Workspace(clock)
    poller = WorkspacePoller(workspace.list, floor=1.0, clock=clock)

    answers = await asyncio.gather(*(poller.get("cpu-1", max_age=60) for _ in range(50)))

    assert workspace.calls == 1
    assert all(known and body is not None for known, body in answers)
    assert await poller.get("missing", max_age=60) == (True, None)


async def test_max_age_and_the_floor_decide_when_to_list_again() -> None:
    clock = Clock()
    workspace = Workspace(clock)
    poller = WorkspacePoller(workspace.list, floor=2.0, clock=clock)
    await poller.get("cpu-1", max_age=60)

    clock.now += 30
    await poller.get("cpu-1", max_age=60)
    assert workspace.calls == 1, "younger than max_age: no listing"
    await poller.get("cpu-1", max_age=1)
    assert workspace.calls == 2, "older than a short max_age: listed"

    poller.invalidate("CPU-1")
    clock.now += 1
    await poller.get("cpu-1", max_age=0)
    assert workspace.calls == 2, "a write marks it stale, but never below the floor"
    clock.now += 1
    await poller.get("other", max_age=60)
    assert workspace.calls == 2, "another compute's entry is not stale"
    await poller.get("cpu-1", max_age=60)
    assert workspace.calls == 3, "stale and past the floor: listed even for a long max_age"
    clock.now += 30
    await poller.get("cpu-1", max_age=60)
    assert workspace.calls == 3, "the listing saw the write: fresh again"


async def test_a_slow_listing_stretches_the_floor() -> None:
    clock = Clock()
    workspace = Workspace(clock, took=1.5)  # e.g. twenty pages of a thousand computes
    poller = WorkspacePoller(workspace.list, floor=1.0, clock=clock)
    started = clock.now
    await poller.get("cpu-1", max_age=0)

    clock.now = started + LIST_DUTY * 1.5 - 0.5
    await poller.get("cpu-1", max_age=0)
    assert workspace.calls == 1, "a listing is not repeated sooner than LIST_DUTY times what it took"
    clock.now += 1
    await poller.get("cpu-1", max_age=0)
    assert workspace.calls == 2


async def test_a_listing_of_many_pages_is_spaced_by_the_reads_listings_may_use() -> None:
    clock = Clock()
    workspace = Workspace(clock)  # answers at once, as the emulator does
    pages = 20  # a thousand computes

    async def listing() -> Listing:
        listed = await workspace.list()
        for _ in range(pages - 1):
            listed.add_page([])
        return listed

    poller = WorkspacePoller(listing, floor=1.0, clock=clock, list_reads_per_second=10.0)
    assert poller.spacing() == 1.0, "nothing listed yet: the floor"
    await poller.get("cpu-1", max_age=0)
    assert poller.spacing() == pages / 10.0
    clock.now += 1.5
    await poller.get("cpu-1", max_age=0)
    assert workspace.calls == 1, "twenty reads at ten a second: not again within two seconds"
    clock.now += 0.6
    await poller.get("cpu-1", max_age=0)
    assert workspace.calls == 2


async def test_a_get_replaces_the_listed_entry_until_a_later_listing() -> None:
    """A refresh a human asked for reads one compute by GET: the poller keeps that answer, so the next pass that
    reads the (older) listing does not bring the previous state back."""
    clock = Clock()
    workspace = Workspace(clock)
    poller = WorkspacePoller(workspace.list, floor=1.0, clock=clock)
    await poller.get("cpu-1", max_age=60)

    clock.now += 5
    poller.remember("CPU-1", {"name": "CPU-1", "properties": {"provisioningState": "Failed"}})
    _, body = await poller.get("cpu-1", max_age=60)
    assert body is not None
    assert body["properties"] == {"provisioningState": "Failed"}, "the GET's answer, not the listing's"
    assert workspace.calls == 1

    poller.remember("cpu-1", None)
    assert await poller.get("cpu-1", max_age=60) == (True, None), "a GET that found nothing removes the entry"

    clock.now += 60
    _, body = await poller.get("cpu-1", max_age=1)
    assert workspace.calls == 2
    assert body is not None
    assert body["properties"] == {}, "a listing started after the GET is the newer word"


async def test_a_get_made_while_a_listing_runs_wins_over_it() -> None:
    clock = Clock()
    fresh = {"name": "cpu-1", "properties": {"provisioningState": "Updating"}}

    async def listing() -> Listing:
        clock.now += 1
        poller.remember("cpu-1", fresh)  # a GET answered while the listing's pages were read
        clock.now += 1
        return Listing.of([{"name": "cpu-1", "properties": {}}])

    poller = WorkspacePoller(listing, floor=1.0, clock=clock)
    _, body = await poller.get("cpu-1", max_age=0)
    assert body == fresh, "the listing started before the GET: it does not bring the older state back"


async def test_the_whole_listing_is_shared_and_refreshed_by_age() -> None:
    """``items`` (an AmlCompute's activeRuns reads every job): the listing the per-name askers share, listed
    again only once older than ``max_age`` (and never sooner than the floor)."""
    clock = Clock()
    workspace = Workspace(clock)
    poller = WorkspacePoller(workspace.list, floor=1.0, clock=clock)

    assert await poller.items(max_age=10) == workspace.computes
    await poller.get("cpu-1", max_age=10)
    clock.now += 0.5
    await poller.items(max_age=0)
    assert workspace.calls == 1, "within the floor: no second listing"
    clock.now += 10
    workspace.computes = []
    assert await poller.items(max_age=10) == []
    assert workspace.calls == 2


async def test_entries_are_kept_packed_and_each_reader_gets_its_own_copy() -> None:
    """Entries are held packed (amlops.compact: ten thousand listed computes were ≈ 60 MB as dicts): what a reader
    gets is the listed body, equal but its own, so changing it changes nothing the next reader sees."""
    clock = Clock()
    workspace = Workspace(clock)
    workspace.computes = [{"name": "CPU-1", "properties": {"properties": {"vmSize": "STANDARD_D1_V2"}}}]
    poller = WorkspacePoller(workspace.list, floor=1.0, clock=clock)

    _, body = await poller.get("cpu-1", max_age=60)
    assert body == workspace.computes[0]
    body["properties"] = {}
    assert (await poller.get("cpu-1", max_age=60))[1] == workspace.computes[0]
    assert await poller.items(max_age=60) == workspace.computes
    poller.remember("cpu-2", {"name": "cpu-2"})
    assert (await poller.get("CPU-2", max_age=60))[1] == {"name": "cpu-2"}


def test_a_listing_packs_each_page_as_it_comes_and_counts_the_pages() -> None:
    listing = Listing()
    listing.add_page([{"name": "CPU-1", "properties": {"vmSize": "STANDARD_D1_V2"}}])
    listing.add_page([])
    listing.add_page([{"name": "gpu", "properties": {}}])
    assert listing.requests == 3
    assert {name: unpack(packed) for name, packed in listing.entries.items()} == {
        "cpu-1": {"name": "CPU-1", "properties": {"vmSize": "STANDARD_D1_V2"}},
        "gpu": {"name": "gpu", "properties": {}},
    }
    assert all(isinstance(packed, bytes) for packed in listing.entries.values()), "no page is kept as dicts"
