"""Policies read from the spec: managementPolicy, deletionPolicy, adoption (design.md §2)."""

from __future__ import annotations

from typing import Any

from amlops.reconcile.managed import Managed

# deletionPolicy values that leave the Azure resource alone (BatchCompute's Detach still calls delete():
# detaching is the client's way of deleting an attached compute; the Batch account itself is never touched).
_RELEASE_ONLY = frozenset({"Orphan"})


def observe_only(mr: Managed[Any]) -> bool:
    return bool(mr.spec_value("management_policy", "Manage") == "ObserveOnly")


def deletes_in_azure(mr: Managed[Any]) -> bool:
    return mr.spec_value("deletion_policy", "Delete") not in _RELEASE_ONLY and not observe_only(mr)


def may_adopt(mr: Managed[Any], azure_owner: str | None) -> bool:
    """An existing Azure resource is ours when it carries our owner tag, or when the spec says adopt."""
    return mr.owns(azure_owner) or bool(mr.spec_value("adopt", False))
