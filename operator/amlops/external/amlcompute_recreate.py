"""AmlCompute ``updatePolicy: Recreate``: which create-only fields the cluster in Azure was created from, what
changed since, and the next step of a re-create. Pure: the client reads, :mod:`amlcompute_observe` applies.

The record. Azure echoes some create-only values (vmSize, vmPriority, subnet, location) but not others (the
admin user's key or password Secret, and whatever else Azure only takes at creation), so amlops records them:
each create-only spec field (the keys of ``api.amlcompute.IMMUTABLE``, less the two that name the cluster) as a
digest of its value, never the value (a Secret is only named anyway). The PUT that creates a cluster carries
the digest of the whole record in the tag ``amlops.io-create-digest``: the record lands in Azure in the same
write as the cluster, so no crash can separate them; ``status.createOnlyFields`` keeps the per-field digests,
which name the fields that changed. A cluster without the tag (created before this feature, or adopted) takes
the current spec as its record only when what Azure echoes agrees with it.

The steps, each decided afresh from Azure and the status on every pass (so a restarted operator resumes where
its predecessor was killed): wait while Azure is busy with the cluster (Creating, Updating, Deleting: the old
cluster's DELETE is never sent twice), wait while a node runs or prepares a job, then DELETE; the cluster absent,
the engine creates it from the spec (with the new tag: the new cluster is never taken for the old one).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from amlops.api.amlcompute import IMMUTABLE, NAMES_THE_CLUSTER, AmlComputeSpec
from amlops.api.kind import GROUP
from amlops.external import amlcompute_map as m

JSON = dict[str, Any]
CREATE_DIGEST_TAG = f"{GROUP}-create-digest"
# Fields a re-create changes: every create-only one but those that say which cluster this is.
CREATE_ONLY = tuple(name for name in IMMUTABLE if name not in NAMES_THE_CLUSTER)
_DIGEST = 16


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:_DIGEST]


def field_digests(spec: AmlComputeSpec) -> dict[str, str]:
    """The record of ``spec``: every create-only field, as a digest of its value (its default included: a field
    a record lacks is one that was not create-only when the cluster was made, see :func:`compare`)."""
    values = spec.model_dump(by_alias=True, mode="json")
    return {name: _digest(values.get(name)) for name in CREATE_ONLY}


def record_digest(fields: Mapping[str, str]) -> str:
    """The value of the ``amlops.io-create-digest`` tag for a record (at most 256 characters: it is 16)."""
    return _digest(dict(fields))


def to_status(fields: Mapping[str, str] | None) -> list[str] | None:
    """``status.createOnlyFields``: ``name=digest`` entries, sorted. A list, since a merge patch replaces a list
    whole but merges a map key by key (a field back at its default would linger in a map)."""
    return None if fields is None else [f"{name}={value}" for name, value in sorted(fields.items())]


def from_status(value: Any) -> dict[str, str] | None:
    """The record ``status.createOnlyFields`` holds (None: none, or not one amlops wrote)."""
    if not isinstance(value, list) or not all(isinstance(v, str) and "=" in v for v in value):
        return None
    return dict(v.split("=", 1) for v in value)


def create_tags(spec: AmlComputeSpec) -> dict[str, str]:
    """The tag a new cluster carries: the record of the spec it is created from."""
    return {CREATE_DIGEST_TAG: record_digest(field_digests(spec))}


def _norm(value: Any) -> str | None:
    """ARM compares these case-insensitively, and writes regions with or without spaces ("East US", "eastus")."""
    return None if value is None or value == "" else str(value).replace(" ", "").lower()


def _compute_props(body: JSON) -> JSON:
    compute = body.get("properties") or {}
    return compute.get("properties") or {}


# What Azure echoes of the create-only fields: (the spec's value, Azure's value), both normalised. location is
# compared only when the spec names one (absent, it is the workspace's, which Azure alone knows here).
_ECHOED: dict[str, Callable[[AmlComputeSpec, JSON], tuple[str | None, str | None]]] = {
    "vmSize": lambda s, b: (_norm(s.vm_size), _norm(_compute_props(b).get("vmSize"))),
    "vmPriority": lambda s, b: (_norm(s.vm_priority), _norm(_compute_props(b).get("vmPriority"))),
    "subnet": lambda s, b: (_norm(m.subnet_id(s)), _norm((_compute_props(b).get("subnet") or {}).get("id"))),
    "location": lambda s, b: (_norm(s.location), _norm(b.get("location")) if s.location else None),
}


def echoed_differences(spec: AmlComputeSpec, body: JSON) -> dict[str, str]:
    """Fields whose value Azure reports and which differ from the spec: name → "azure → spec", for humans. A value
    Azure leaves out is no evidence either way, except subnet (no subnet is a value)."""
    out: dict[str, str] = {}
    for name, values in _ECHOED.items():
        wanted, actual = values(spec, body)
        if name == "location" and wanted is None:
            continue
        if (actual is not None or name == "subnet") and wanted != actual:
            out[name] = f"{name} {actual or 'none'} → {wanted or 'none'}"
    return out


@dataclass(frozen=True)
class Record:
    """What amlops knows the cluster was created from: per-field digests (None: not known), and the changes
    the spec now asks for, as text for humans (empty: none)."""

    fields: dict[str, str] | None
    changes: tuple[str, ...]


def compare(spec: AmlComputeSpec, body: JSON, recorded: Mapping[str, str] | None) -> Record:
    """The cluster's record and the create-only changes the spec asks for.

    - Tagged (created by amlops with this feature): the tag is the truth. ``recorded`` (status) is used to name
      the fields when it is the tagged record; the spec's own record when its digest is the tag.
    - Not tagged: ``recorded`` when the status holds one; else the spec's record, provided Azure's echoed
      values agree with the spec (else those that differ are the changes, and nothing is recorded).
    A field Azure echoes with the spec's value is no change, whatever the record says (location left out, then
    named as the workspace's own region): there is nothing to re-create for."""
    wanted = field_digests(spec)
    echoed = echoed_differences(spec, body)
    tag = (body.get("tags") or {}).get(CREATE_DIGEST_TAG)
    known = dict(recorded) if recorded is not None else None
    if tag is not None:
        if record_digest(wanted) == tag:
            return Record(wanted, ())
        if known is None or record_digest(known) != tag:
            # Tagged, but the status lost the per-field record (a change made while the cluster was Creating):
            # the change is certain, only the fields Azure echoes can be named.
            unknown = ", ".join(n for n in CREATE_ONLY if n not in _ECHOED)
            return Record(None, tuple(echoed.values()) or (f"one of {unknown}",))
    elif known is None:
        return Record(None, tuple(echoed.values())) if echoed else Record(wanted, ())
    assert known is not None
    # A field the record lacks became create-only (a key added to IMMUTABLE) after the cluster was made: what it
    # was then is not known, and an operator upgrade must not re-create every cluster. It counts from the next
    # re-create on.
    changed = [n for n in CREATE_ONLY if n in known and known[n] != wanted[n]]
    texts = tuple(echoed.get(n, n) for n in changed if not _agrees(spec, body, n))
    return Record(known, texts)


def _agrees(spec: AmlComputeSpec, body: JSON, name: str) -> bool:
    """Azure reports this field with the spec's value (no subnet on both sides counts; no location in the spec
    does not: it is the workspace's region, unknown here)."""
    if name not in _ECHOED:
        return False
    wanted, actual = _ECHOED[name](spec, body)
    return wanted == actual and (wanted is not None or name == "subnet")


class Step(Enum):
    NONE = "none"  # nothing to re-create, or not this object's to re-create
    WAIT_FOR_AZURE = "wait-for-azure"  # Azure is busy with the cluster: its own transitional state
    WAIT_FOR_IDLE = "wait-for-idle"  # nodes run or prepare jobs
    DELETE = "delete"


def busy_nodes(body: JSON) -> int:
    """Nodes running or preparing a job: a re-create would kill their jobs."""
    counts = _compute_props(body).get("nodeStateCounts") or {}
    return sum(int(counts.get(key) or 0) for key in ("runningNodeCount", "preparingNodeCount"))


def next_step(spec: AmlComputeSpec, body: JSON, changes: tuple[str, ...], *, deleting: bool, converging: bool) -> Step:
    """The decision table of a re-create, in order: no change, Refuse, ObserveOnly, or the object going →
    nothing; Azure busy with the cluster (``converging``: Creating, Updating, Deleting, or an operation amlops
    saved still running, which a listing older than the DELETE does not show yet) → wait for it; a node busy →
    wait for idle; else delete."""
    if not changes or spec.update_policy != "Recreate" or spec.management_policy != "Manage" or deleting:
        return Step.NONE
    if converging:
        return Step.WAIT_FOR_AZURE
    if busy_nodes(body) > 0:
        return Step.WAIT_FOR_IDLE
    return Step.DELETE
