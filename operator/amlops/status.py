"""Conditions, observedGeneration and event records: pure functions over status dicts.

The kstatus / Argo CD contract (design.md §3): ``Ready``, ``Reconciling`` and ``Stalled`` conditions with
PascalCase reasons and ``observedGeneration``; a condition's ``lastTransitionTime`` changes only when its
status does. Every condition change is told in an :class:`EventRecord` (Warning for Stalled and Failed; the changes of
one pass share one) that the handlers' bridge posts. Imports only the standard library and ``amlops.api``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

READY = "Ready"
RECONCILING = "Reconciling"
STALLED = "Stalled"
RUNNING = "Running"
COMPLETE = "Complete"
FAILED = "Failed"
SUSPENDED = "Suspended"

# Reasons of our own; Azure's error codes are used verbatim where Azure gave one.
REASON_CREATING = "Creating"
REASON_UPDATING = "Updating"
REASON_DELETING = "Deleting"
REASON_WAITING_FOR_AZURE = "WaitingForAzure"
REASON_THROTTLED = "Throttled"
REASON_INVALID_SPEC = "InvalidSpec"
REASON_IMMUTABLE = "ImmutableFieldChanged"
REASON_CREDENTIALS_MISSING = "CredentialsMissing"
REASON_SUCCEEDED = "Succeeded"
REASON_OBSERVED = "Observed"
REASON_PAUSED = "Paused"

Status = Literal["True", "False", "Unknown"]
# Conditions whose True is bad news: their events are Warnings.
_WARNING_WHEN_TRUE = frozenset({STALLED, FAILED})


@dataclass(frozen=True)
class ConditionUpdate:
    type: str
    status: Status
    reason: str
    message: str = ""


@dataclass(frozen=True)
class EventRecord:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


# The one timestamp form amlops writes (status, conditions, annotations): RFC 3339 in UTC, whole seconds, as
# Kubernetes writes metav1.Time.
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def now_iso(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime(TIME_FORMAT)


def parse_time(stamp: Any) -> datetime | None:
    """An RFC 3339 time as Kubernetes, ARM and Batch write it (``Z`` or an offset; none means UTC), else None."""
    if not stamp:
        return None
    try:
        parsed = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def set_conditions(
    current: Sequence[Mapping[str, Any]],
    updates: Iterable[ConditionUpdate],
    generation: int | None,
    now: datetime | None = None,
) -> tuple[list[dict[str, Any]], list[EventRecord]]:
    """Apply ``updates`` to ``current``; return the new list (order kept, new types appended) and events.

    ``lastTransitionTime`` moves only when a condition's status changes; an event is recorded when its status
    or reason changes. A message alone (node counts, progress) changes on nearly every pass: posting an Event
    for each would flood the namespace and cost the operator more than the reconcile itself. The changes of
    one pass share one Event (Ready, Reconciling, Stalled and a kind's own conditions move together: one
    "Creating" Event says all of them, where one each was half of the apiserver's writes at a thousand
    objects).
    """
    by_type = {str(c["type"]): dict(c) for c in current}
    order = [str(c["type"]) for c in current]
    changes: list[ConditionUpdate] = []
    stamp = now_iso(now)
    for u in updates:
        old = by_type.get(u.type)
        changed_status = old is None or old.get("status") != u.status
        new = {
            "type": u.type,
            "status": u.status,
            "reason": u.reason,
            "message": u.message,
            "lastTransitionTime": stamp if changed_status or old is None else old["lastTransitionTime"],
            "observedGeneration": generation,
        }
        if old is None:
            order.append(u.type)
        if old is None or any(old.get(k) != new[k] for k in ("status", "reason")):
            changes.append(u)
        by_type[u.type] = new
    return [by_type[t] for t in order], _events_for(changes)


def _events_for(changes: Sequence[ConditionUpdate]) -> list[EventRecord]:
    """One event for all of a pass's changes, with the first change's reason (the engine lists Ready,
    Reconciling and Stalled first); a Warning when any change is bad news."""
    if not changes:
        return []
    warning = any(u.status == "True" and u.type in _WARNING_WHEN_TRUE for u in changes)
    text = "; ".join(
        f"{u.type}={u.status}"
        + (f" ({u.reason})" if u.reason != changes[0].reason else "")
        + (f": {u.message}" if u.message else "")
        for u in changes
    )
    return [EventRecord("Warning" if warning else "Normal", changes[0].reason, text)]


def find(conditions: Sequence[Mapping[str, Any]], type_: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions if c.get("type") == type_), None)


def is_true(conditions: Sequence[Mapping[str, Any]], type_: str) -> bool:
    c = find(conditions, type_)
    return c is not None and c.get("status") == "True"


def progressing(reason: str, message: str) -> list[ConditionUpdate]:
    """Converging: Reconciling=True, Stalled=False, Ready=False (kstatus: InProgress)."""
    return [
        ConditionUpdate(RECONCILING, "True", reason, message),
        ConditionUpdate(STALLED, "False", reason, ""),
        ConditionUpdate(READY, "False", reason, message),
    ]


def ready(reason: str = REASON_SUCCEEDED, message: str = "") -> list[ConditionUpdate]:
    """Matches the spec and is usable (kstatus: Current)."""
    return [
        ConditionUpdate(READY, "True", reason, message),
        ConditionUpdate(RECONCILING, "False", reason, ""),
        ConditionUpdate(STALLED, "False", reason, ""),
    ]


def stalled(reason: str, message: str) -> list[ConditionUpdate]:
    """Needs a human (kstatus: Failed)."""
    return [
        ConditionUpdate(STALLED, "True", reason, message),
        ConditionUpdate(RECONCILING, "False", reason, ""),
        ConditionUpdate(READY, "False", reason, message),
    ]
