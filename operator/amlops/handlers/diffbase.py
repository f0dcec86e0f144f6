"""Where kopf keeps the last handled spec (its "diff base"): in this process, not in an annotation.

kopf compares each object with the essence it last handled to tell a create, an update or nothing. Its
default keeps that essence in an annotation, which costs one more PATCH (and one more watch event for every
watcher of the kind) after every create and update: at a thousand objects applied at once, a fifth of all
apiserver writes. amlops does not need it to survive a restart: every handler runs the same level-based
reconcile pass, so an object whose essence is unknown (a new process, a new leader, an evicted entry) is
treated as created and simply gets one full pass. That makes this a cache: bounded, and safe to lose.

Each essence is kept packed (``amlops.compact``): as parsed dicts it cost ≈ 1 KB per object, kept for as long
as the object lives, and kopf reads it back only when a watch event for the object arrives.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any, cast

import kopf

from amlops.compact import pack, unpack

# Entries for more objects than this drop the least recently handled ones (each costs a few hundred bytes).
LIMIT = 100_000


class ProcessDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """kopf's annotation storage for building essences, with ``fetch``/``store`` kept in memory by uid."""

    def __init__(self, *, prefix: str, key: str, limit: int = LIMIT) -> None:
        super().__init__(prefix=prefix, key=key)
        self._limit = limit
        self._essences: OrderedDict[str, bytes] = OrderedDict()

    def build(self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None) -> kopf.BodyEssence:
        """kopf's essence (spec, labels, annotations), built from only those parts: kopf deep-copies the whole
        body first, managed fields and status included, on every watch event (a twentieth of the operator's
        CPU with a thousand objects converging)."""
        if extra_fields:  # a handler watching status fields: kopf's own way
            return super().build(body=body, extra_fields=extra_fields)
        meta = body.get("metadata") or {}
        slim = {key: value for key, value in body.items() if key not in ("metadata", "status")}
        slim["metadata"] = {key: meta[key] for key in ("labels", "annotations") if key in meta}
        return super().build(body=kopf.Body(cast(kopf.RawBody, slim)))

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        uid = body.metadata.uid or ""
        packed = self._essences.get(uid)
        if packed is None:
            return None
        self._essences.move_to_end(uid)
        return cast(kopf.BodyEssence, unpack(packed))

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        uid = body.metadata.uid or ""
        self._essences[uid] = pack(essence)
        self._essences.move_to_end(uid)
        while len(self._essences) > self._limit:
            self._essences.popitem(last=False)
        # Earlier builds kept the essence in an annotation: drop it the first time the object is handled, so
        # it does not show a spec that is no longer current.
        for key in self.make_keys(self.key, body=body):
            if key in body.metadata.annotations:
                patch.metadata.annotations[key] = None

    def forget(self, uid: str) -> None:
        """The object is gone."""
        self._essences.pop(uid, None)

    def __len__(self) -> int:
        return len(self._essences)
