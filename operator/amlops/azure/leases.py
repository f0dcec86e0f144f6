"""Which objects use which shared, per-tenant cache entries (SDK clients, credentials, pollers, blob stores).

Caches are shared between objects that name the same credentials, account or workspace, and would otherwise
grow for as long as the operator runs, one entry per tenant that ever existed (and keep its credential alive).
Each object holds the entries it used last, one per slot (``"ml"``, ``"batch"``, ...); an entry that no object
holds any more is released, to be closed and dropped by its cache. Pure bookkeeping: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class Leases(Generic[K]):
    def __init__(self) -> None:
        self._held: dict[str, dict[str, K]] = {}  # object uid → slot → entry key
        self._users: dict[K, int] = {}  # entry key → how many (object, slot) pairs hold it

    def hold(self, uid: str, slot: str, key: K) -> list[K]:
        """Object ``uid`` uses ``key`` in ``slot`` (instead of what it used there before, e.g. a rotated
        credential's client): the entries nobody holds any more."""
        slots = self._held.setdefault(uid, {})
        previous = slots.get(slot)
        if previous == key:
            return []
        slots[slot] = key
        self._users[key] = self._users.get(key, 0) + 1
        return self._drop(previous) if previous is not None else []

    def release(self, uid: str) -> list[K]:
        """Object ``uid`` is gone: the entries only it held."""
        freed: list[K] = []
        for key in self._held.pop(uid, {}).values():
            freed += self._drop(key)
        return freed

    def holders(self, key: K) -> int:
        return self._users.get(key, 0)

    def _drop(self, key: K) -> list[K]:
        left = self._users.get(key, 0) - 1
        if left > 0:
            self._users[key] = left
            return []
        self._users.pop(key, None)
        return [key]
