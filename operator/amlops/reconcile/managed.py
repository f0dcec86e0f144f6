"""The engine's view of one custom resource: identity, typed spec, last status, policies' inputs."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from amlops.api.kind import GROUP

SpecT = TypeVar("SpecT", bound=BaseModel)

PAUSED_ANNOTATION = f"{GROUP}/paused"
RECONCILE_REQUESTED_ANNOTATION = f"{GROUP}/reconcile-requested-at"
OWNER_TAG = f"{GROUP}-owner"
# ARM tag values hold at most 256 characters (and Batch metadata values are kept to the same).
OWNER_TAG_MAX = 256
_NAME_HASH = 16


def owner_value(namespace: str, name: str, uid: str) -> str:
    """``<namespace>.<name>.<uid>``, within ``OWNER_TAG_MAX`` for any valid object: a namespace (≤ 63) and a
    uid (36) always fit whole; a name too long for the rest is cut and ends in a hash of the whole name, so two
    long names that share a beginning still get different tags."""
    full = f"{namespace}.{name}.{uid}"
    if len(full) <= OWNER_TAG_MAX:
        return full
    room = OWNER_TAG_MAX - len(namespace) - len(uid) - 2
    digest = hashlib.sha256(name.encode()).hexdigest()[:_NAME_HASH]
    return f"{namespace}.{name[: max(0, room - _NAME_HASH - 1)]}-{digest}.{uid}"[-OWNER_TAG_MAX:]


@dataclass(frozen=True)
class OwnerRef:
    """The object an owner tag names."""

    namespace: str
    name: str
    uid: str


# A tag is read from Azure, where anyone with access to the resource may have written it: only names Kubernetes
# could have given are looked up.
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_UID = re.compile(r"^[a-zA-Z0-9-]{1,64}$")


def parse_owner(tag: str) -> OwnerRef | None:
    """The inverse of :attr:`Managed.owner` (``<namespace>.<name>.<uid>``: a namespace and a uid hold no dot, a
    name may); None when the tag is not of that form."""
    namespace, _, rest = tag.partition(".")
    name, _, uid = rest.rpartition(".")
    if _NAMESPACE.match(namespace) and _NAME.match(name) and _UID.match(uid) and ".." not in name:
        return OwnerRef(namespace, name, uid)
    return None


@dataclass(frozen=True)
class Managed(Generic[SpecT]):
    kind: str
    namespace: str
    name: str
    uid: str
    generation: int
    spec: SpecT
    status: Mapping[str, Any] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    deleting: bool = False
    has_finalizer: bool = True

    @property
    def owner(self) -> str:
        """The value of the ``amlops.io-owner`` tag on every Azure resource amlops creates for this object."""
        return owner_value(self.namespace, self.name, self.uid)

    def owns(self, tag_value: str | None) -> bool:
        """Whether an owner tag (or pool metadata) value names this object: the one owner comparison."""
        return tag_value is not None and tag_value == self.owner

    @property
    def paused(self) -> bool:
        return self.annotations.get(PAUSED_ANNOTATION, "").lower() == "true"

    @property
    def reconcile_requested_at(self) -> str | None:
        return self.annotations.get(RECONCILE_REQUESTED_ANNOTATION)

    @property
    def refresh_requested(self) -> bool:
        """A value of ``amlops.io/reconcile-requested-at`` not handled yet (``status.lastHandledReconcileAt``;
        the seed's ``refresh_state()``): this pass reads its resource from Azure afresh, not from a shared
        listing that may be a poll interval old."""
        requested = self.reconcile_requested_at
        return bool(requested) and requested != self.status.get("lastHandledReconcileAt")

    def spec_value(self, name: str, default: Any = None) -> Any:
        return getattr(self.spec, name, default)
