"""Waiting on a condition with a deadline, for tests that drive the emulator in their own event loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


async def eventually(condition: Callable[[], Any], what: str, within: float) -> None:
    """Until ``condition()`` is true; fails the test naming ``what`` after ``within`` real seconds."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        await asyncio.sleep(0.02)
