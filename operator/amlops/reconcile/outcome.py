"""What one reconcile pass decided: status to publish, conditions to set, when to look again."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from amlops.status import STALLED, ConditionUpdate, EventRecord, progressing, stalled

# Ours, for a pass that failed on something no one can wait out: a bug in amlops, an Azure answer it cannot
# read. Stalled (kstatus: Failed), with the exception in the message and its traceback in the operator's log.
REASON_INTERNAL_ERROR = "InternalError"
# amlops_reconcile_total's result label.
Result = Literal["ok", "retry", "stalled", "error"]


@dataclass(frozen=True)
class Outcome:
    """Every engine branch ends in one of these; the handlers' bridge turns it into a status patch.

    ``status`` holds kind-specific fields (Azure's names, camelCase) merged into ``.status`` (a None value
    removes the field). ``conditions`` are applied with :func:`amlops.status.set_conditions`.
    ``requeue_after`` is seconds until the next pass (None: the steady interval decides). ``retry`` asks the
    handler to run again after ``requeue_after``. Whether the pass stalled, and the metric's ``result``, are
    read from the conditions themselves, so a label can never disagree with them; the constructors
    (:meth:`converging`, :meth:`stalled`, :meth:`error`) keep the flags in line with the conditions too.
    ``release_finalizer`` is set once a deleted object may go. ``events`` are posted besides those of the
    condition changes. ``interim``: the pass did nothing and found Azure still converging on its own (Creating,
    Updating, Deleting) with an observation that says its details are a snapshot the next pass replaces
    (``Observation.interim``; not a running job's progress): written only when a condition changes or the status
    has aged (the handlers' bridge). ``deferred``: the pass ended before it could act (a write waiting for its turn
    in ARM's budget, :class:`~amlops.reconcile.errors.Deferred`): nothing is written, and the object is looked at
    again after ``requeue_after``.
    """

    conditions: tuple[ConditionUpdate, ...] = ()
    status: Mapping[str, Any] = field(default_factory=dict)
    requeue_after: float | None = None
    retry: bool = False
    release_finalizer: bool = False
    events: tuple[EventRecord, ...] = ()
    interim: bool = False
    deferred: bool = False

    @classmethod
    def converging(
        cls,
        reason: str,
        message: str,
        requeue_after: float,
        *,
        status: Mapping[str, Any] | None = None,
        conditions: Iterable[ConditionUpdate] = (),
        interim: bool = False,
    ) -> Outcome:
        """Reconciling: amlops or Azure is on its way; look again after ``requeue_after``. ``interim``: Azure alone
        is on its way, and this pass did nothing."""
        return cls(
            conditions=(*progressing(reason, message), *conditions),
            status=status or {},
            requeue_after=requeue_after,
            retry=True,
            interim=interim,
        )

    @classmethod
    def stalled(
        cls,
        reason: str,
        message: str,
        requeue_after: float,
        *,
        status: Mapping[str, Any] | None = None,
        conditions: Iterable[ConditionUpdate] = (),
    ) -> Outcome:
        """Stalled: progress needs a human; the work queue rechecks slowly, so a fix made outside is seen."""
        return cls(
            conditions=(*stalled(reason, message), *conditions), status=status or {}, requeue_after=requeue_after
        )

    @classmethod
    def steady(
        cls,
        conditions: Iterable[ConditionUpdate],
        *,
        status: Mapping[str, Any] | None = None,
        settle_after: float | None = None,
    ) -> Outcome:
        """Nothing for amlops to do (Ready, or idle as Azure left it); ``settle_after``: look again that soon, for a
        usable resource that is still moving (an autoscaling cluster resizing)."""
        return cls(
            conditions=tuple(conditions),
            status=status or {},
            requeue_after=settle_after,
            retry=settle_after is not None,
        )

    @classmethod
    def deferral(cls, delay: float) -> Outcome:
        """Nothing done yet, nothing to write: look again after ``delay``."""
        return cls(requeue_after=delay, retry=True, deferred=True)

    @classmethod
    def error(cls, error: BaseException, requeue_after: float) -> Outcome:
        """A pass that raised what the error vocabulary does not know: Stalled ``InternalError``, tried again after
        ``requeue_after`` (a back-off the caller grows) in case what broke was a passing answer."""
        return cls(
            conditions=tuple(stalled(REASON_INTERNAL_ERROR, internal_error_message(error))),
            requeue_after=requeue_after,
            retry=True,
        )

    @property
    def terminal(self) -> bool:
        """The pass left the object Stalled: progress needs a human."""
        return self._stalled is not None

    @property
    def result(self) -> Result:
        """``amlops_reconcile_total``'s label, from the conditions: error (Stalled ``InternalError``), stalled,
        retry (looking again soon) or ok."""
        stall = self._stalled
        if stall is not None:
            return "error" if stall.reason == REASON_INTERNAL_ERROR else "stalled"
        return "retry" if self.retry else "ok"

    @property
    def _stalled(self) -> ConditionUpdate | None:
        return next((c for c in self.conditions if c.type == STALLED and c.status == "True"), None)


MESSAGE_LIMIT = 300  # of the exception's text in the condition: the log has all of it


def internal_error_message(error: BaseException) -> str:
    text = str(error)
    if len(text) > MESSAGE_LIMIT:
        text = f"{text[:MESSAGE_LIMIT]}..."
    return f"amlops failed unexpectedly ({type(error).__name__}: {text}); see the operator's log"
