"""The emulator's runner loops (the run executor's and the Batch node agent's) stop when cancelled.

Both turn with ``processes.tick``. Python 3.11's ``asyncio.wait_for`` returns the awaited result instead of
raising when the cancellation arrives together with it (the ``fut.done()`` branch of its ``except
CancelledError``), so a loop cancelled at shutdown just after a wake-up kept running and the emulator's
teardown waited for it for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

import pytest

from amlops_emulator.processes import tick

pytestmark = pytest.mark.emulator


async def _loop(wakeup: asyncio.Event, turns: list[int]) -> None:
    while True:
        await tick(wakeup, 10.0)
        turns.append(1)


async def test_a_loop_cancelled_in_the_iteration_that_wakes_it_stops() -> None:
    wakeup, turns = asyncio.Event(), list[int]()
    loop = asyncio.create_task(_loop(wakeup, turns))
    await asyncio.sleep(0)  # the loop waits on its event
    wakeup.set()
    loop.cancel()  # same iteration: wait_for would have swallowed this

    with pytest.raises(asyncio.CancelledError):
        await loop
    assert turns == []


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="3.12 rewrote wait_for on asyncio.timeout")
async def test_wait_for_swallows_that_cancellation_on_this_python() -> None:
    """The reason for ``tick``, shown: the same sequence with ``wait_for`` ends the wait normally."""
    wakeup = asyncio.Event()

    async def old_tick() -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wakeup.wait(), 10.0)

    waiting = asyncio.create_task(old_tick())
    await asyncio.sleep(0)
    wakeup.set()
    waiting.cancel()

    await waiting  # no CancelledError
    assert not waiting.cancelled()


async def test_tick_returns_at_its_time_without_a_wakeup() -> None:
    wakeup = asyncio.Event()
    await tick(wakeup, 0.01)
    assert not wakeup.is_set()


async def test_tick_clears_the_wakeup_it_returned_for() -> None:
    wakeup = asyncio.Event()
    wakeup.set()
    await tick(wakeup, 10.0)
    assert not wakeup.is_set()
