"""What one reconcile pass decided: status to publish, conditions to set, when to look again."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from amlops.status import STALLED, ConditionUpdate, EventRecord


@dataclass(frozen=True)
class Outcome:
    """Every engine branch ends in one of these; the handlers' bridge turns it into a status patch.

    ``status`` holds kind-specific fields (Azure's names, camelCase) merged into ``.status`` (a None value
    removes the field). ``conditions`` are applied with :func:`amlops.status.set_conditions`.
    ``requeue_after`` is seconds until the next pass (None: the steady timer decides). ``retry`` asks the
    handler to run again after ``requeue_after`` (still converging); ``terminal`` (a Stalled pass) is read
    from the conditions themselves, so a metric label can never disagree with them.
    ``release_finalizer`` is set once a deleted object may go. ``events`` are posted besides those of the
    condition changes.
    """

    conditions: tuple[ConditionUpdate, ...] = ()
    status: Mapping[str, Any] = field(default_factory=dict)
    requeue_after: float | None = None
    retry: bool = False
    release_finalizer: bool = False
    events: tuple[EventRecord, ...] = ()

    @property
    def terminal(self) -> bool:
        """The pass left the object Stalled: progress needs a human."""
        return any(c.type == STALLED and c.status == "True" for c in self.conditions)
