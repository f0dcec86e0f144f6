"""Emulator time: real time scaled by a speed factor, plus explicit jumps from ``/_emulator/clock/advance``.

Every simulated duration (provisioning, node preparation, idle scale-down, pool resize) is measured on this
clock, so tests run fast (a large speed factor) and deterministically (advance the clock by hand, speed 0).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta


class VirtualClock:
    def __init__(self, speed: float = 1.0, start: datetime | None = None) -> None:
        if speed < 0:
            raise ValueError("speed must be >= 0")
        self._speed = speed
        self._origin_real = time.monotonic()
        self._origin_virtual = start or datetime.now(UTC)
        self._offset = timedelta()

    @property
    def speed(self) -> float:
        return self._speed

    def now(self) -> datetime:
        elapsed = (time.monotonic() - self._origin_real) * self._speed
        return self._origin_virtual + timedelta(seconds=elapsed) + self._offset

    def advance(self, seconds: float) -> datetime:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self._offset += timedelta(seconds=seconds)
        return self.now()

    def real_seconds(self, virtual_seconds: float) -> float:
        """How long to really wait for ``virtual_seconds`` to pass (infinite when the clock is stopped)."""
        return float("inf") if self._speed == 0 else virtual_seconds / self._speed
