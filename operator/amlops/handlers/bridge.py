"""From an engine :class:`Outcome` to kopf: one status patch, Kubernetes Events, and the per-object lock."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import kopf

from amlops.reconcile.outcome import Outcome
from amlops.status import set_conditions


def object_lock(memo: kopf.Memo) -> asyncio.Lock:
    """The per-object lock: kopf serialises an object's change handlers but runs timers as separate tasks.

    It lives in the per-object memo; never in the operator memo, which kopf shallow-copies into every
    object's memo and would share one lock between all objects (kopf docs/memos.rst).
    """
    lock = memo.get("lock")
    if lock is None:
        lock = memo["lock"] = asyncio.Lock()
    assert isinstance(lock, asyncio.Lock)
    return lock


def apply_outcome(
    outcome: Outcome,
    *,
    body: kopf.Body,
    patch: kopf.Patch,
    annotations: Mapping[str, str] | None = None,
) -> None:
    """Write the outcome through ``patch.status`` (never a handler's return value: the schema prunes it)."""
    status: Mapping[str, Any] = body.get("status") or {}
    generation = body.metadata.get("generation")
    conditions, events = set_conditions(status.get("conditions") or [], outcome.conditions, generation)
    for key, value in outcome.status.items():
        patch.status[key] = value
    patch.status["conditions"] = conditions
    patch.status["observedGeneration"] = generation
    for record in events:
        kopf.event(body, type=record.type, reason=record.reason, message=record.message)
