"""Policies read from the spec: managementPolicy, deletionPolicy, adoption (design.md §2); and which Azure
answers mean that nothing is left to delete."""

from __future__ import annotations

from typing import Any

from amlops.reconcile.managed import Managed
from amlops.status import REASON_CREDENTIALS_MISSING

# deletionPolicy values that leave the Azure resource alone (BatchCompute's Detach still calls delete():
# detaching is the client's way of deleting an attached compute; the Batch account itself is never touched).
_RELEASE_ONLY = frozenset({"Orphan"})

# Azure's answers that say the resource, or a parent it lives under, does not exist: nothing of ours can be left
# under it, so a deletion is done. Authorization and authentication errors are not among them: the resource may
# well exist and bill, and releasing the object would leak it.
NOTHING_LEFT = frozenset(
    {
        "ParentResourceNotFound",  # ARM: the workspace of a compute
        "ResourceGroupNotFound",
        "SubscriptionNotFound",
        "ResourceNotFound",  # ARM's generic 404 (a workspace GET)
        "WorkspaceNotFound",  # Azure ML's own code for a missing workspace
        "AccountNotFound",  # the Batch data plane: the account is gone, and every pool and job with it
    }
)


def observe_only(mr: Managed[Any]) -> bool:
    return bool(mr.spec_value("management_policy", "Manage") == "ObserveOnly")


def deletes_in_azure(mr: Managed[Any]) -> bool:
    return mr.spec_value("deletion_policy", "Delete") not in _RELEASE_ONLY and not observe_only(mr)


def adopts(mr: Managed[Any]) -> bool:
    return bool(mr.spec_value("adopt", False))


def needs_owner_lookup(mr: Managed[Any], azure_owner: str | None) -> bool:
    """Whether deciding ownership needs to know if the tag's object still exists: only for another object's tag
    on a resource this one would adopt."""
    return azure_owner is not None and not mr.owns(azure_owner) and adopts(mr)


def owned(mr: Managed[Any], azure_owner: str | None, tagged_owner_exists: bool) -> bool:
    """Whether amlops may write and delete an existing Azure resource for this object: it carries this object's
    owner tag, or ``spec.adopt`` is true and it carries no owner tag or the tag of an object that no longer
    exists. A resource tagged by another object that exists is never taken over."""
    if mr.owns(azure_owner):
        return True
    if not adopts(mr):
        return False
    return azure_owner is None or not tagged_owner_exists


def not_owned_message(mr: Managed[Any], azure_owner: str | None) -> str:
    if adopts(mr):
        return (
            f"an Azure resource with this name is owned by another object that still exists (owner tag: "
            f"{azure_owner}); amlops never takes over another object's resource, spec.adopt or not"
        )
    return (
        f"an Azure resource with this name exists but is not owned by this object (owner tag: "
        f"{azure_owner or 'none'}); set spec.adopt: true to take it over (only possible when it has no owner tag "
        f"or its owner no longer exists)"
    )


def never_reached(code: str) -> bool:
    """``code`` says amlops cannot act in Azure for this object with what its namespace holds (no credentials it
    may use): a deletion cannot wait for them. A credentials Secret an object used is kept by the in-use
    finalizer until the object is gone, so a missing one was never used: nothing was created with it."""
    return code == REASON_CREDENTIALS_MISSING


def nothing_left(code: str) -> bool:
    """Azure's ``code`` says the resource or its parent does not exist: a deletion has nothing left to do."""
    return code in NOTHING_LEFT
