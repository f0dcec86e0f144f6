"""The parts of ARM's compute envelope every compute kind reads the same way (AmlCompute, attached Batch)."""

from __future__ import annotations

from typing import Any

from amlops.reconcile.managed import OWNER_TAG

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


def foreign_type(body: JSON, expected: str) -> str | None:
    """The compute's ``computeType`` when it is not ``expected`` (an attached Batch account where an AmlCompute
    is declared, or the reverse): the seed says deleting such a compute through the wrong type changes nothing,
    and none of the declared kind's settings apply to it."""
    kind = str((body.get("properties") or {}).get("computeType") or expected)
    return None if kind == expected else kind
