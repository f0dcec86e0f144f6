"""Who owns an Azure resource: the object its ``amlops.io-owner`` tag (or pool metadata) names, looked up in
the cluster. Adoption takes over only what no existing object owns (``reconcile.policy.owned``)."""

from __future__ import annotations

from amlops.external.ports import ObjectReader
from amlops.reconcile.managed import parse_owner

# Every kind that tags what it creates: ARM computes carry an AmlCompute's or a BatchCompute's tag, pools a
# BatchCompute's or a ParallelJob's. A uid is unique in the cluster, so a match of any kind is that object.
OWNER_PLURALS = ("amlcomputes", "batchcomputes", "paralleljobs")


async def owner_exists(objects: ObjectReader, owner: str) -> bool:
    """Whether the object ``owner`` names still exists: an object of its namespace with its uid. Matched by uid,
    not by name: a long name is shortened in the tag (``owner_value``). A tag not of amlops' form counts as
    existing: what cannot be told free is never taken over."""
    ref = parse_owner(owner)
    if ref is None:
        return True
    for plural in OWNER_PLURALS:
        try:
            found = await objects.list(plural, ref.namespace)
        except Exception:  # e.g. 403: a namespace this operator may not read (a namespaced install)
            return True  # cannot be told free: treated as owned (Stalled NotOwned, rechecked later)
        if any((obj.get("metadata") or {}).get("uid") == ref.uid for obj in found):
            return True
    return False
