"""ARM's per-subscription token buckets (reads, writes, deletes) and the headers that report them.

Since 2024 ARM refills a bucket continuously (reads 250 + 25/s, writes and deletes 200 + 10/s) and a global
subscription bucket 15 times larger spans all principals. Buckets run on real time: ``Retry-After`` is what the
SDK really sleeps, whatever the emulator clock's speed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

READS, WRITES, DELETES = "reads", "writes", "deletes"
GLOBAL_FACTOR = 15


@dataclass(frozen=True)
class BucketLimit:
    size: int
    refill_per_second: float


@dataclass(frozen=True)
class ThrottleLimits:
    reads: BucketLimit = BucketLimit(250, 25.0)
    writes: BucketLimit = BucketLimit(200, 10.0)
    deletes: BucketLimit = BucketLimit(200, 10.0)

    def of(self, kind: str) -> BucketLimit:
        return {READS: self.reads, WRITES: self.writes, DELETES: self.deletes}[kind]


class TokenBucket:
    def __init__(self, limit: BucketLimit, now: float) -> None:
        self._limit = limit
        self._tokens = float(limit.size)
        self._stamp = now

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._stamp)
        self._tokens = min(float(self._limit.size), self._tokens + elapsed * self._limit.refill_per_second)
        self._stamp = now

    def take(self, now: float) -> bool:
        self._refill(now)
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def remaining(self) -> int:
        return int(self._tokens)

    def retry_after(self) -> int:
        """Whole seconds until one token is back (ARM sends integers, at least 1)."""
        if self._limit.refill_per_second <= 0:
            return 3600
        return max(1, math.ceil((1.0 - self._tokens) / self._limit.refill_per_second))


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    kind: str
    remaining: int
    global_remaining: int
    retry_after: int


class SubscriptionThrottle:
    def __init__(self, limits: ThrottleLimits, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._limits = limits
        self._monotonic = monotonic
        self._buckets: dict[tuple[str, str, bool], TokenBucket] = {}

    def _bucket(self, subscription: str, kind: str, is_global: bool) -> TokenBucket:
        key = (subscription.lower(), kind, is_global)
        bucket = self._buckets.get(key)
        if bucket is None:
            limit = self._limits.of(kind)
            if is_global:
                limit = BucketLimit(limit.size * GLOBAL_FACTOR, limit.refill_per_second * GLOBAL_FACTOR)
            bucket = self._buckets[key] = TokenBucket(limit, self._monotonic())
        return bucket

    def take(self, subscription: str, kind: str) -> Verdict:
        now = self._monotonic()
        own, shared = self._bucket(subscription, kind, False), self._bucket(subscription, kind, True)
        allowed = own.take(now)
        if allowed and not shared.take(now):
            allowed = False
        retry = 0 if allowed else max(own.retry_after(), shared.retry_after())
        return Verdict(allowed, kind, own.remaining(), shared.remaining(), retry)

    def reset(self) -> None:
        self._buckets.clear()


def kind_of(method: str) -> str:
    """ARM counts GET/HEAD as reads, DELETE as deletes, everything else (PUT, PATCH, POST actions) as writes."""
    if method in ("GET", "HEAD"):
        return READS
    return DELETES if method == "DELETE" else WRITES
