"""Helpers shared by the emulator's two process runners (the Batch node agent and Azure ML's run executor)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket


def kill_group(pid: int) -> None:
    """SIGKILL a process group started with ``start_new_session=True``: the shell and everything it started."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the kernel's pick), for a rendezvous the user processes open."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


async def tick(wakeup: asyncio.Event, seconds: float) -> None:
    """Until ``wakeup`` is set or ``seconds`` passed, then clear it: one turn of a runner's loop.

    Not ``asyncio.wait_for``: on Python 3.11 it swallows a cancellation that arrives in the same loop iteration
    as the event (it returns the event's result instead of raising), so a loop cancelled at shutdown kept
    running and ``close()`` waited for it for ever (an emulator teardown hung about once in 50 test runs).
    ``asyncio.timeout`` counts cancellations and lets an outside one through."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await wakeup.wait()
    wakeup.clear()
