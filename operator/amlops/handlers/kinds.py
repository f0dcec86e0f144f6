"""Handlers for the three kinds: create, update, resume and a timer all call one level-based reconcile."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import kopf

from amlops import metrics
from amlops.api import KINDS
from amlops.api.kind import GROUP, VERSION, CustomResource
from amlops.handlers.bridge import apply_outcome, object_lock
from amlops.reconcile.outcome import Outcome
from amlops.status import REASON_WAITING_FOR_AZURE, progressing

Reconciler = Callable[[kopf.Body], Awaitable[Outcome]]

STEADY_INTERVAL = 60.0


async def _not_connected(body: kopf.Body) -> Outcome:
    # Until a kind's Azure client exists, say so truthfully: seen and waiting, never Ready.
    return Outcome(
        conditions=tuple(
            progressing(REASON_WAITING_FOR_AZURE, "amlops has seen this generation; no Azure client is set up")
        )
    )


RECONCILERS: dict[str, Reconciler] = {kind.kind(): _not_connected for kind in KINDS}


def _register(kind: type[CustomResource]) -> None:
    reconcile = RECONCILERS[kind.kind()]
    resource = (GROUP, VERSION, kind.plural())

    async def handle(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
        async with object_lock(memo):
            with metrics.RECONCILE_DURATION.labels(kind.kind()).time():
                outcome = await reconcile(body)
            apply_outcome(outcome, body=body, patch=patch)
            metrics.RECONCILE_TOTAL.labels(kind.kind(), "ok").inc()

    kopf.on.resume(*resource, id="reconcile")(handle)
    kopf.on.create(*resource, id="reconcile")(handle)
    kopf.on.update(*resource, id="reconcile")(handle)
    kopf.timer(*resource, id="poll", interval=STEADY_INTERVAL, initial_delay=STEADY_INTERVAL, idle=5)(handle)


for _kind in KINDS:
    _register(_kind)
