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

A write made by an object's pass (:func:`deferring`) does not sleep longer than ``DEFER_AFTER``: it keeps its
token as a ticket in the object's memory and the pass ends (:class:`~amlops.reconcile.errors.Deferred`); the
object's next pass, at the ticket's time, uses it. A thousand creates paced over 80 s would otherwise hold the
work queue's slots while they sleep, and objects whose compute Azure had created waited for a slot to be seen
Ready (bench/amlcompute_scale.py's timeline: 235 Ready from 10 s to 40 s while Azure created 300 more).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from amlops.reconcile.errors import Deferred

READS, WRITES, DELETES = "reads", "writes", "deletes"
# The longest a pass's write sleeps for its token; a longer wait ends the pass (see above).
DEFER_AFTER = 2.0
# The current pass's tickets (bucket kind and pacer -> when its token exists, on the pacer's clock); None outside
# a pass.
_TICKETS: ContextVar[MutableMapping[str, float] | None] = ContextVar("amlops_pacing_tickets", default=None)


@contextmanager
def deferring(tickets: MutableMapping[str, float]) -> Iterator[None]:
    """Within: writes that would wait longer than ``DEFER_AFTER`` raise ``Deferred``, their ticket kept in
    ``tickets`` (an object's memory, which outlives the pass) for the pass that comes at its time."""
    token = _TICKETS.set(tickets)
    try:
        yield
    finally:
        _TICKETS.reset(token)


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
        """Wait until a request of ``kind`` may leave; the seconds waited. In a pass (:func:`deferring`), a write
        that would wait longer than ``DEFER_AFTER`` raises ``Deferred`` instead, and keeps its token as the pass's
        ticket; a write with a ticket uses it instead of taking another token."""
        now, estimate = self._clock(), self._estimate(kind)
        tickets = _TICKETS.get() if kind == WRITES else None
        key = f"{kind}@{id(self)}"  # a ticket is this pacer's token (an object may change subscription)
        at = tickets.pop(key, None) if tickets is not None else None
        if at is None:
            wait = estimate.admit(now)
        else:  # the token was taken when the ticket was made
            wait = max(0.0, at - now)
            estimate.outstanding += 1
        if tickets is not None and wait > DEFER_AFTER:
            estimate.outstanding -= 1  # kept, not sent: an answer would never come to count it back
            tickets[key] = now + wait
            raise Deferred(wait, f"ARM's {kind} budget has a token for this request in {wait:.1f}s")
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
