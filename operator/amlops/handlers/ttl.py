"""``ttlSecondsAfterFinished``: a finished job (every job kind) deletes itself, as a finished batch/v1 Job does.

The deletion goes through the apiserver like a user's would (with the object's uid as precondition, so a
newer object of the same name is never hit); the finalizer then cleans up Azure as for any delete.
"""

from __future__ import annotations

from datetime import UTC, datetime

import kopf

from amlops.api.kind import CustomResource
from amlops.external.ports import ObjectWriter
from amlops.reconcile.job import ttl_remaining
from amlops.reconcile.outcome import Outcome

REASON_TTL_EXPIRED = "TTLExpired"


async def collect(kind: type[CustomResource], body: kopf.Body, outcome: Outcome, objects: ObjectWriter) -> float | None:
    """Delete the finished object once its TTL has passed. Returns the seconds left, or None when there is
    nothing to wait for (no TTL, not finished, or deleted now)."""
    if body.spec.get("deletionProtection"):  # protection wins: the deletion would be denied anyway
        return None
    status = {**dict(body.get("status") or {}), **outcome.status}
    remaining = ttl_remaining(body.spec.get("ttlSecondsAfterFinished"), status, datetime.now(UTC))
    if remaining is None or remaining > 0:
        return remaining
    meta = body.metadata
    kopf.event(
        body,
        type="Normal",
        reason=REASON_TTL_EXPIRED,
        message=f"finished {status.get('completionTime')}; deleting after ttlSecondsAfterFinished",
    )
    await objects.delete(kind.plural(), meta.namespace or "", meta.name or "", meta.uid or "")
    return None
