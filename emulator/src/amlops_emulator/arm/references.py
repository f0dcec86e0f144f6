"""Linked resource ids in a compute's body (user-assigned identities, the subnet), checked as Azure checks them.

Three refusals, each a 400 with the code public threads quote from real Azure:

- ``LinkedInvalidPropertyId``: ARM itself refuses a linked id that is not a fully qualified resource id
  (azure-cli issue 25401, azure-docs issue 112377: "Property id 'usermanagedidentityexample' at path '' is
  invalid. Expect fully qualified resource Id that start with '/subscriptions/{subscriptionId}' or
  '/providers/{resourceProviderNamespace}/'.").
- ``FailedIdentityOperation``: the identity service cannot assign an identity that does not exist; ARM wraps its
  answer (azure-libraries-for-net issue 690, azure-cli issue 31837: "Identity operation for resource '…' failed
  with error 'Failed to perform resource identity operation. Status: 'BadRequest'. Response: '…'.'.").
- ``InvalidResourceReference``: a subnet that does not exist (azure-cli issue 8569, azure-docs issue 81734:
  "Resource {subnet} referenced by resource {resource} was not found. Please make sure that the referenced
  resource exists, and that both resources are in the same region.").

The emulator's seed lists subscriptions and resource groups, not identities or virtual networks, so "does not
exist" means: the id does not name that type, or names a subscription or resource group the seed lacks. Not
verified: the identity service's inner message for a missing identity, the ``path`` ARM names for a malformed
subnet id (the threads show identity keys at path ''), and whether the ML RP words the missing subnet as the
network RP does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from amlops_emulator.arm.errors import ArmError

GroupExists = Callable[[str, str], bool]

_QUALIFIED = re.compile(r"^/(subscriptions/[^/]+|providers/[^/]+)(/|$)", re.IGNORECASE)
_IDENTITY = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.ManagedIdentity/"
    r"userAssignedIdentities/[^/]+$",
    re.IGNORECASE,
)
_SUBNET = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.Network/"
    r"virtualNetworks/[^/]+/subnets/[^/]+$",
    re.IGNORECASE,
)


def check_identities(compute_id: str, identity: dict[str, Any] | None, group_exists: GroupExists) -> None:
    """Refuse user-assigned identities that are malformed or do not exist."""
    for arm_id in (identity or {}).get("userAssignedIdentities") or {}:
        # ARM reports identity keys at path '' (both threads quote it so).
        _require_qualified(arm_id, "")
        match = _IDENTITY.match(arm_id)
        if match is None or not group_exists(match["sub"], match["rg"]):
            raise failed_identity_operation(
                compute_id,
                f"Resource '{arm_id}' of type 'Microsoft.ManagedIdentity/userAssignedIdentities' was not found.",
            )


def check_subnet(compute_id: str, subnet: dict[str, Any] | None, group_exists: GroupExists) -> None:
    """Refuse a subnet id that is malformed or names no subnet the emulator could have."""
    if subnet is None:
        return
    subnet_id = str(subnet["id"])
    _require_qualified(subnet_id, "properties.properties.subnet.id")
    match = _SUBNET.match(subnet_id)
    if match is None or not group_exists(match["sub"], match["rg"]):
        raise ArmError(
            400,
            "InvalidResourceReference",
            f"Resource {subnet_id} referenced by resource {compute_id} was not found. Please make sure that the "
            "referenced resource exists, and that both resources are in the same region.",
        )


def _require_qualified(arm_id: str, path: str) -> None:
    if _QUALIFIED.match(arm_id) is None:
        raise ArmError(
            400,
            "LinkedInvalidPropertyId",
            f"Property id '{arm_id}' at path '{path}' is invalid. Expect fully qualified resource Id that start "
            "with '/subscriptions/{subscriptionId}' or '/providers/{resourceProviderNamespace}/'.",
        )


def failed_identity_operation(compute_id: str, detail: str) -> ArmError:
    inner = json.dumps({"error": {"code": "BadRequest", "message": detail}}, separators=(",", ":"))
    return ArmError(
        400,
        "FailedIdentityOperation",
        f"Identity operation for resource '{compute_id}' failed with error 'Failed to perform resource identity "
        f"operation. Status: 'BadRequest'. Response: '{inner}'.'.",
    )
