"""ARM request pacing (``azure/pacing.py``) against the emulator's own model of ARM's buckets
(``amlops_emulator.arm.throttle``: reads 250 + 25/s, writes and deletes 200 + 10/s, per the request limits and
throttling page cited there), on a virtual clock: when each request leaves, and what ARM answers it."""

from __future__ import annotations

import asyncio

import pytest

from amlops.azure.pacing import (
    ARM_BUCKETS,
    DEFER_AFTER,
    DELETES,
    READS,
    WRITES,
    Bucket,
    Pacer,
    buckets,
    deferring,
    kind_of,
)
from amlops.reconcile.errors import Deferred
from amlops_emulator.arm.throttle import BucketLimit, SubscriptionThrottle, ThrottleLimits

pytestmark = pytest.mark.unit
SUB = "00000000-0000-0000-0000-000000000001"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def departures(pacer: Pacer, clock: Clock, kind: str, count: int) -> list[float]:
    """``count`` requests asked for at once at ``clock.now``: when each may leave (admission never sleeps here:
    the sleep is recorded, not waited)."""
    return [clock.now + await pacer.admit(kind) for _ in range(count)]


def send(arm: SubscriptionThrottle, pacer: Pacer, clock: Clock, kind: str, at: list[float]) -> int:
    """The requests leave at ``at`` and ARM answers each at once; the number answered 429."""
    refused = 0
    for moment in sorted(at):
        clock.now = moment
        verdict = arm.take(SUB, kind)
        pacer.answered(kind, verdict.remaining)
        if not verdict.allowed:
            refused += 1
            pacer.throttled(kind, verdict.retry_after)
    return refused


async def no_sleep(_: float) -> None:
    return None


def paced(clock: Clock, share: float = 0.8, buckets: dict[str, Bucket] | None = None) -> Pacer:
    return Pacer(share, buckets or dict(ARM_BUCKETS), clock=clock, sleep=no_sleep)


@pytest.mark.parametrize(
    ("method", "kind"),
    [("GET", READS), ("HEAD", READS), ("PUT", WRITES), ("PATCH", WRITES), ("POST", WRITES), ("DELETE", DELETES)],
)
def test_arm_counts_methods_against_buckets(method: str, kind: str) -> None:
    assert kind_of(method) == kind


@pytest.mark.parametrize("share", [0.5, 0.8, 1.0])
async def test_a_thousand_writes_at_once_leave_at_the_share_of_the_refill_and_arm_refuses_none(share: float) -> None:
    """The bench's case: 1,000 creates at once. The floor with a share s of a 200 + 10/s bucket is (1000 - 200 s)
    / (10 s) seconds; the pacer meets it within a token, and ARM answers no 429."""
    clock = Clock()
    arm = SubscriptionThrottle(ThrottleLimits(), clock)
    pacer = paced(clock, share)

    at = await departures(pacer, clock, WRITES, 1000)

    assert send(arm, pacer, clock, WRITES, at) == 0
    floor = (1000 - 200 * share) / (10 * share)
    assert floor - 1e-6 <= max(at) <= floor + 1 / (10 * share) + 1e-6, "within one token of the floor"
    assert at == sorted(at), "first come, first served"


async def test_amlops_leaves_the_rest_of_the_bucket_to_others() -> None:
    """After a burst, the bucket ARM reports never goes below (1 - share) of its size because of amlops."""
    clock = Clock()
    arm = SubscriptionThrottle(ThrottleLimits(), clock)
    pacer = paced(clock, 0.8)
    lowest = 200
    for moment in sorted(await departures(pacer, clock, WRITES, 400)):
        clock.now = moment
        verdict = arm.take(SUB, WRITES)
        assert verdict.allowed
        pacer.answered(WRITES, verdict.remaining)
        lowest = min(lowest, verdict.remaining)
    assert lowest >= 0.2 * 200 - 1


async def test_other_tools_requests_seen_in_the_headers_slow_amlops_down() -> None:
    """Terraform took 150 writes just before: the first answer says so, and amlops' next requests wait for the
    refill instead of being refused."""
    clock = Clock()
    arm = SubscriptionThrottle(ThrottleLimits(), clock)
    for _ in range(150):
        assert arm.take(SUB, WRITES).allowed
    pacer = paced(clock, 0.8)

    first = await departures(pacer, clock, WRITES, 1)
    assert send(arm, pacer, clock, WRITES, first) == 0
    rest = await departures(pacer, clock, WRITES, 50)

    assert send(arm, pacer, clock, WRITES, rest) == 0
    assert rest.count(0.0) == 49 - 40, "down to the others' room (20 % of 200) at once, then at the refill"
    assert max(rest) > 0


async def test_a_larger_bucket_is_learned_from_the_first_answer() -> None:
    """The emulator's raised buckets (100,000) or a subscription with larger limits: no waiting once ARM said so."""
    clock = Clock()
    limits = ThrottleLimits(writes=BucketLimit(100_000, 10.0))
    arm = SubscriptionThrottle(limits, clock)
    pacer = paced(clock, 0.8)
    assert send(arm, pacer, clock, WRITES, await departures(pacer, clock, WRITES, 1)) == 0

    at = await departures(pacer, clock, WRITES, 1000)

    assert max(at) == 0.0
    assert send(arm, pacer, clock, WRITES, at) == 0


async def test_a_429_holds_the_next_request_past_retry_after() -> None:
    clock = Clock()
    pacer = paced(clock, 1.0)
    pacer.throttled(WRITES, 7.0)

    (wait,) = await departures(pacer, clock, WRITES, 1)

    assert wait >= 7.0


async def test_buckets_are_apart_reads_do_not_wait_for_writes() -> None:
    clock = Clock()
    pacer = paced(clock, 0.8)
    await departures(pacer, clock, WRITES, 500)

    assert await departures(pacer, clock, READS, 100) == [0.0] * 100


async def test_admission_really_sleeps_with_the_default_sleep() -> None:
    """Without an injected sleep the request waits on the event loop (here: no wait, so it returns at once)."""
    pacer = Pacer(0.8)
    assert await asyncio.wait_for(pacer.admit(READS), 5) == 0.0


async def passes(pacer: Pacer, clock: Clock, count: int) -> tuple[list[float], list[int], list[float]]:
    """``count`` objects' passes, all queued at ``clock.now``, each making one write in :func:`deferring` with the
    object's own tickets, as the work queue makes them: a deferred pass comes again at its ticket's time. Per
    object: when its write leaves, how many passes it took, how long its last pass slept."""
    queue = [(clock.now, n) for n in range(count)]
    tickets: list[dict[str, float]] = [{} for _ in range(count)]
    leaves, made, slept = [0.0] * count, [0] * count, [0.0] * count
    while queue:
        queue.sort()
        clock.now, n = queue.pop(0)
        made[n] += 1
        try:
            with deferring(tickets[n]):
                slept[n] = await pacer.admit(WRITES)
        except Deferred as e:
            queue.append((clock.now + e.delay, n))
            continue
        leaves[n] = clock.now + slept[n]
    return leaves, made, slept


@pytest.mark.parametrize("share", [0.8, 1.0])
async def test_passes_whose_writes_are_far_off_end_and_come_back_at_their_turn(share: float) -> None:
    """1,000 creates in the work queue's passes: those whose token is more than DEFER_AFTER away end their pass and
    come back once, at their turn, to the token they were given (no pass sleeps long, none comes back twice), and
    the writes still leave at the floor's pace with no 429."""
    clock = Clock()
    arm = SubscriptionThrottle(ThrottleLimits(), clock)
    pacer = paced(clock, share)

    leaves, made, slept = await passes(pacer, clock, 1000)

    assert send(arm, pacer, clock, WRITES, leaves) == 0
    floor = (1000 - 200 * share) / (10 * share)
    assert floor - 1e-6 <= max(leaves) <= floor + 1 / (10 * share) + 1e-6
    assert max(made) == 2, "a deferred object comes back once, at its turn"
    assert max(slept) <= DEFER_AFTER, "no pass sleeps longer than DEFER_AFTER"
    deferred = made.count(2)
    assert abs(deferred - (1000 - 200 * share - DEFER_AFTER * 10 * share)) <= 2, "every write due later, and no other"


async def test_a_pass_that_comes_before_its_turn_is_deferred_again_to_the_same_turn() -> None:
    """A spec change queues the object early: it keeps its place (its ticket), and takes no second token."""
    clock = Clock()
    pacer = paced(clock, 1.0, {**ARM_BUCKETS, WRITES: Bucket(2, 1.0)})  # one token, and the one left for others
    mine: dict[str, float] = {}
    await pacer.admit(WRITES)
    for _ in range(4):
        await pacer.admit(WRITES)  # others' turns: 1, 2, 3 and 4 s from now
    with pytest.raises(Deferred) as first, deferring(mine):
        await pacer.admit(WRITES)
    assert first.value.delay == 5.0
    clock.now = 2.5
    with pytest.raises(Deferred) as again, deferring(mine):
        await pacer.admit(WRITES)
    assert again.value.delay == 2.5
    clock.now = 5.0
    with deferring(mine):
        assert await pacer.admit(WRITES) == 0.0
    assert mine == {}
    assert await pacer.admit(WRITES) == 1.0, "the next token is the one after this object's, not a second of its"


async def test_only_a_pass_s_writes_are_deferred() -> None:
    """Reads (the shared listings) and requests outside a pass wait for their token as before."""
    clock = Clock()
    pacer = paced(clock, 1.0, {READS: Bucket(2, 1.0), WRITES: Bucket(2, 1.0), DELETES: Bucket(2, 1.0)})
    tickets: dict[str, float] = {}
    with deferring(tickets):
        assert [await pacer.admit(READS) for _ in range(5)] == [0.0, 1.0, 2.0, 3.0, 4.0]
        assert [await pacer.admit(DELETES) for _ in range(5)] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert [await pacer.admit(WRITES) for _ in range(5)] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert tickets == {}


@pytest.mark.parametrize("share", [0.0, -0.1, 1.5])
def test_a_share_outside_0_1_is_refused(share: float) -> None:
    with pytest.raises(ValueError, match="share"):
        Pacer(share)


def test_buckets_setting_overrides_the_documented_ones() -> None:
    assert buckets("") == ARM_BUCKETS
    assert buckets("writes=20:2, reads=100:12.5") == {
        READS: Bucket(100, 12.5),
        WRITES: Bucket(20, 2),
        DELETES: ARM_BUCKETS[DELETES],
    }


@pytest.mark.parametrize("text", ["writes=20", "puts=1:1", "writes=0:1", "reads=5:0", "reads=a:b"])
def test_a_bucket_setting_that_says_nothing_usable_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="ARM bucket"):
        buckets(text)
