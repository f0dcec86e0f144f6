"""The contract between the engine and each kind's Azure client (after crossplane-runtime's ExternalClient).

- **Idempotent**: creating what exists, or deleting what is missing or already going, is not an error. Every
  method may be called again after a crash at any point.
- **Non-blocking**: writes start the Azure operation and return at once (never ``await poller.result()``),
  optionally with a :class:`Pending` so a restarted operator resumes polling instead of writing twice.
- ``observe`` never writes. It reports facts in an :class:`Observation`; the engine decides.
- Errors are raised only as :class:`~amlops.reconcile.errors.RetryableError` or
  :class:`~amlops.reconcile.errors.TerminalError`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

from amlops.reconcile.managed import Managed
from amlops.status import ConditionUpdate, EventRecord

SpecT = TypeVar("SpecT", bound=BaseModel)
IntentT = TypeVar("IntentT")


@dataclass(frozen=True)
class Pending:
    """A long-running Azure operation in flight, saved in ``status.pendingOperation``."""

    operation: str
    continuation_token: str | None = None
    started_at: str | None = None

    def to_status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.operation}
        if self.continuation_token:
            out["token"] = self.continuation_token
        if self.started_at:
            out["startedAt"] = self.started_at
        return out


@dataclass(frozen=True)
class Observation:
    """What Azure says now. ``at_provider`` holds status fields in Azure's names (camelCase)."""

    resource_exists: bool
    resource_up_to_date: bool = True
    # Azure is still converging on its own (Creating, Resizing, Deleting): look again soon.
    transitional: bool = False
    transitional_reason: str = "WaitingForAzure"
    # While transitional, what ``at_provider`` and the message report is a snapshot the pass that ends the
    # transition replaces (a compute Azure is creating: provisioningState Creating): no status write of its own
    # (Outcome.interim). Not a running job's: its progress is what users follow.
    interim: bool = False
    # Usable, but moving (an autoscaling cluster resizing): Ready, and look again soon for fresh numbers.
    settling: bool = False
    # Settled but not usable, and nothing to converge on (a suspended job): Ready=False with ``reason``,
    # Reconciling=False, Stalled=False.
    ready: bool = True
    reason: str = ""
    message: str = ""
    # Azure reports the resource as failed (e.g. provisioningState Failed): (error code, message).
    failure: tuple[str, str] | None = None
    # The Azure resource of this name is another kind of thing (an attached Batch compute where an AmlCompute is
    # declared): never this object's, adopt or not, and never deleted by it.
    foreign_type: str | None = None
    # Value of the owner tag on the Azure resource; None when the resource has none.
    owner: str | None = None
    at_provider: Mapping[str, Any] = field(default_factory=dict)
    # Kind-specific extra conditions (QuotaSufficient, MinNodesAvailable, ...).
    conditions: tuple[ConditionUpdate, ...] = ()
    diff: str = ""
    # The update carries out a job's next step (add tasks, suspend, finish) rather than converging a diff:
    # doing it again is progress, so the engine does not count it towards UpdateDoesNotConverge.
    step: bool = False
    pending: Pending | None = None
    # Something a human must hear about even when the object goes (a pool that may be left behind): posted as
    # Events with this pass's status.
    events: tuple[EventRecord, ...] = ()
    # What ``update()`` is to do, as ``observe()`` decided it (a kind's own value, e.g. a job's next step):
    # it travels with the observation, so a client keeps no state between the two calls.
    intent: Any = None


class ExternalClient(Protocol[SpecT]):
    async def observe(self, mr: Managed[SpecT]) -> Observation: ...

    async def create(self, mr: Managed[SpecT]) -> Pending | None: ...

    async def update(self, mr: Managed[SpecT], observation: Observation) -> Pending | None: ...

    async def delete(self, mr: Managed[SpecT]) -> Pending | None: ...

    async def owner_exists(self, owner: str) -> bool:
        """Whether the object an ``amlops.io-owner`` tag names still exists (its namespace and name, with that
        uid). A tag it cannot read counts as existing: never take over what may be someone else's."""
        ...

    async def dependents(self, mr: Managed[SpecT]) -> tuple[str, ...]:
        """Objects that still need this one's Azure access (ParallelJobs on a BatchCompute); its deletion waits
        for them, as Kubernetes keeps a PersistentVolumeClaim while a Pod uses it."""
        ...


async def intent_of(
    observation: Observation, kind: type[IntentT], observe: Callable[[], Awaitable[Observation]]
) -> IntentT | None:
    """What ``update()`` is to do as ``observe()`` decided it; observed afresh when the observation came from
    elsewhere and carries none (None: still nothing to do)."""
    if isinstance(observation.intent, kind):
        return observation.intent
    fresh = (await observe()).intent
    return fresh if isinstance(fresh, kind) else None
