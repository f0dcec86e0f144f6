"""The parts of ARM's compute envelope every compute kind reads the same way (AmlCompute, attached Batch)."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from amlops.azure.errors import arm_error_text
from amlops.reconcile.managed import OWNER_TAG
from amlops.status import now_iso, parse_time

JSON = dict[str, Any]


def owner_of(body: JSON) -> str | None:
    """The ``amlops.io-owner`` tag, or None when the compute has none."""
    value = (body.get("tags") or {}).get(OWNER_TAG)
    return str(value) if value is not None else None


def provisioning_errors(compute: JSON) -> list[JSON]:
    """``properties.provisioningErrors`` as status entries ``{code, message}``."""
    return [
        {
            "code": str((e.get("error") or {}).get("code", "")),
            "message": str((e.get("error") or {}).get("message", "")),
        }
        for e in compute.get("provisioningErrors") or []
    ]


def failure(compute: JSON) -> tuple[str, str] | None:
    """(code, message) when Azure reports the compute (``properties``) as Failed: its first provisioning error,
    the details after the message (a create or an attach alike)."""
    if str(compute.get("provisioningState") or "").lower() != "failed":
        return None
    for item in compute.get("provisioningErrors") or []:
        error = item.get("error") or {}
        if error.get("code"):
            return str(error["code"]), arm_error_text(error)
    return "ProvisioningFailed", "Azure reports provisioningState Failed without an error"


def timestamp(value: Any) -> str | None:
    """An ARM timestamp (.NET's seven fractional digits and ``+00:00``, or milliseconds, or ``Z``) in the one form
    every status time has (``status.TIME_FORMAT``, whole seconds); None when absent or unreadable. Whole seconds
    also mean a value that only Azure's rendering changed writes no new status."""
    parsed = parse_time(value)
    return now_iso(parsed.astimezone(UTC)) if parsed is not None else None


def foreign_type(body: JSON, expected: str) -> str | None:
    """The compute's ``computeType`` when it is not ``expected`` (an attached Batch account where an AmlCompute
    is declared, or the reverse): the seed says deleting such a compute through the wrong type changes nothing,
    and none of the declared kind's settings apply to it."""
    kind = str((body.get("properties") or {}).get("computeType") or expected)
    return None if kind == expected else kind
