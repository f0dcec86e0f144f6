"""Pacing ARM requests to the subscription's budget, so that amlops is not answered 429 and leaves room for the
team's other tools.

ARM throttles with token buckets per subscription and principal, one per operation type (request limits and
throttling, learn.microsoft.com, 2024: reads 250 + 25/s, writes 200 + 10/s, deletes 200 + 10/s; GET/HEAD are
reads, DELETE deletes, PUT/PATCH/POST writes). Each answer says what is left in
``x-ms-ratelimit-remaining-subscription-{reads,writes,deletes}``.

A :class:`Pacer` keeps, per operation type, two estimates and admits a request only when both allow it:

- **amlops' own share**: a bucket of ``share`` * the size refilled at ``share`` * the rate, so amlops never
  takes more than its share of the budget's refill, however long it runs;
- **the subscription's bucket** as ARM reports it: refilled at the full rate, lowered to what every answer says
  is left (which counts the other tools' requests too), and never drawn below ``(1 - share)`` * the size, the
  room left for others.

Admission is virtual scheduling: a request takes its token at once (a bucket may go below zero: the queue) and
sleeps until the moment its token exists, so concurrent requests leave in order and at the rate, with no loop.
A larger bucket than the documented one (an enterprise subscription, the emulator's raised buckets) is learned
from the headers; a smaller one shows as ``remaining`` lower than expected and is followed the same way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

READS, WRITES, DELETES = "reads", "writes", "deletes"


@dataclass(frozen=True)
class Bucket:
    size: float
    refill_per_second: float


# The documented per-principal subscription buckets (2024 onwards).
ARM_BUCKETS: Mapping[str, Bucket] = {
    READS: Bucket(250, 25.0),
    WRITES: Bucket(200, 10.0),
    DELETES: Bucket(200, 10.0),
}


def buckets(text: str) -> dict[str, Bucket]:
    """``AMLOPS_ARM_BUCKETS`` ("writes=20:2,reads=100:10": size and refill per second of the buckets to assume)
    over the documented ones: a subscription with other limits (free and trial ones get lower limits)."""
    found = dict(ARM_BUCKETS)
    for part in filter(None, (p.strip() for p in text.split(","))):
        kind, _, numbers = part.partition("=")
        size, _, refill = numbers.partition(":")
        if kind not in ARM_BUCKETS:
            raise ValueError(f"ARM bucket {kind!r} is none of {sorted(ARM_BUCKETS)}")
        try:
            found[kind] = Bucket(float(size), float(refill))
        except ValueError:
            raise ValueError(f"ARM bucket {part!r} is not <kind>=<size>:<refill per second>") from None
        if found[kind].size < 1 or found[kind].refill_per_second <= 0:
            raise ValueError(f"ARM bucket {part!r} needs a size of at least 1 and a positive refill")
    return found


def kind_of(method: str) -> str:
    """The bucket ARM counts a request against."""
    if method in ("GET", "HEAD"):
        return READS
    return DELETES if method == "DELETE" else WRITES


class _Estimate:
    """One operation type's two buckets, as this process knows them."""

    def __init__(self, bucket: Bucket, share: float, now: float) -> None:
        self.size = bucket.size
        self.rate = bucket.refill_per_second
        self.share = share
        self.own = share * bucket.size  # amlops' share: size * share, refilled at rate * share
        self.server = bucket.size  # the subscription's bucket: what ARM would say is left
        self.stamp = now
        self.outstanding = 0  # admitted, answer not seen yet

    def refill(self, now: float) -> None:
        elapsed = max(0.0, now - self.stamp)
        self.stamp = now
        self.own = min(self.share * self.size, self.own + elapsed * self.share * self.rate)
        self.server = min(self.size, self.server + elapsed * self.rate)

    def admit(self, now: float) -> float:
        """Take a token now; the seconds until it exists."""
        self.refill(now)
        self.own -= 1.0
        self.server -= 1.0
        self.outstanding += 1
        reserve = self.reserve
        wait_own = -self.own / (self.share * self.rate) if self.own < 0 else 0.0
        wait_server = (reserve - self.server) / self.rate if self.server < reserve else 0.0
        return max(wait_own, wait_server)

    @property
    def reserve(self) -> float:
        """What amlops leaves in the subscription's bucket: the others' room, and at least one token, so a request
        never leaves at the very instant ARM's refill would make its token (a hair early is a 429)."""
        return max((1.0 - self.share) * self.size, 1.0)

    def answered(self, now: float, remaining: int | None) -> None:
        """An answer came, saying ``remaining`` (None: no header). Requests still out may not have reached ARM
        when it counted: the estimate is the lower of ours and ARM's less those."""
        self.refill(now)
        self.outstanding = max(0, self.outstanding - 1)
        if remaining is None:
            return
        if remaining + 1 > self.size:  # the bucket is larger than we thought (requests out could only add)
            grown = remaining + 1.0
            self.own += self.share * (grown - self.size)
            self.server += grown - self.size
            self.size = grown
        self.server = min(self.server, float(remaining - self.outstanding))

    def throttled(self, now: float, retry_after: float) -> None:
        """ARM answered 429: nothing is left, and nothing will be for ``retry_after`` seconds."""
        self.refill(now)
        self.server = min(self.server, self.reserve - retry_after * self.rate - self.outstanding)


class Pacer:
    """The ARM buckets of one (principal, subscription): an ``MlClient`` holds one."""

    def __init__(
        self,
        share: float,
        buckets: Mapping[str, Bucket] = ARM_BUCKETS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not 0.0 < share <= 1.0:
            raise ValueError(f"share must be in (0, 1], not {share}")
        self._share = share
        self._buckets = buckets
        self._clock = clock
        self._sleep = sleep
        self._estimates: dict[str, _Estimate] = {}
        self.waited = 0.0  # seconds requests spent waiting for a token, for the metrics

    def _estimate(self, kind: str) -> _Estimate:
        estimate = self._estimates.get(kind)
        if estimate is None:
            estimate = self._estimates[kind] = _Estimate(self._buckets[kind], self._share, self._clock())
        return estimate

    async def admit(self, kind: str) -> float:
        """Wait until a request of ``kind`` may leave; the seconds waited."""
        wait = self._estimate(kind).admit(self._clock())
        if wait > 0:
            self.waited += wait
            await self._sleep(wait)
        return wait

    def answered(self, kind: str, remaining: int | None) -> None:
        self._estimate(kind).answered(self._clock(), remaining)

    def throttled(self, kind: str, retry_after: float) -> None:
        self._estimate(kind).throttled(self._clock(), retry_after)

    def abandoned(self, kind: str) -> None:
        """A request admitted got no answer (refused, reset, timed out): it is no longer out."""
        self._estimate(kind).answered(self._clock(), None)
