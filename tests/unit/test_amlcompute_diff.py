"""``amlcompute_map.diff``: what differs between the spec and ARM's body. A comparison that can never converge
(a case or a duration form Azure writes differently from amlops) would PATCH every pass: each case here says why."""

from __future__ import annotations

from typing import Any

import pytest

from amlops.api.amlcompute import AmlComputeSpec
from amlops.external.amlcompute_map import diff, parse_duration

pytestmark = pytest.mark.unit

UAI = (
    "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/"
    "Microsoft.ManagedIdentity/userAssignedIdentities/scorer"
)


def spec(**overrides: Any) -> AmlComputeSpec:
    return AmlComputeSpec.model_validate(
        {
            "workspace": {"subscriptionId": "00000000-0000-0000-0000-000000000001", "resourceGroup": "rg",
                          "name": "ws1"},
            "vmSize": "STANDARD_D2S_V3",
            "scaleSettings": {"minNodeCount": 0, "maxNodeCount": 4, "nodeIdleTimeBeforeScaleDown": 120},
            **overrides,
        }
    )  # fmt: skip


def body(scale: dict[str, Any] | None = None, identity: dict[str, Any] | None = None) -> dict[str, Any]:
    scale = {"minNodeCount": 0, "maxNodeCount": 4, "nodeIdleTimeBeforeScaleDown": "PT2M", **(scale or {})}
    out: dict[str, Any] = {"properties": {"properties": {"scaleSettings": scale}}}
    if identity is not None:
        out["identity"] = identity
    return out


USER = {"type": "UserAssigned", "userAssignedIdentities": [UAI]}


@pytest.mark.parametrize(
    ("wanted", "observed", "why"),
    [
        (spec(), body(), "identical"),
        (spec(), body({"nodeIdleTimeBeforeScaleDown": "PT120S"}), "seconds instead of minutes"),
        (spec(), body({"nodeIdleTimeBeforeScaleDown": "P0DT0H2M0S"}), "every field written out"),
        (spec(), body({"nodeIdleTimeBeforeScaleDown": "PT0.0333333333333334H"}), "a fraction of an hour"),
        (spec(), body({"nodeIdleTimeBeforeScaleDown": "pt2m"}), "lower case"),
        (spec(), body({"minNodeCount": "0", "maxNodeCount": "4"}), "counts as decimal strings"),
        (
            spec(identity=USER),
            body(identity={"type": "UserAssigned", "userAssignedIdentities": {UAI.lower(): {}}}),
            "a user-assigned identity id in another case: ARM ids are case-insensitive",
        ),
        (
            spec(identity=USER),
            body(identity={"type": "userAssigned", "userAssignedIdentities": {UAI.upper(): {}}}),
            "the identity type in another case",
        ),
        (
            spec(identity={"type": "SystemAssigned,UserAssigned", "userAssignedIdentities": [UAI]}),
            body(identity={"type": "SystemAssigned, UserAssigned", "userAssignedIdentities": {UAI: {}}}),
            "the combined type with a space",
        ),
        (spec(), body(identity={"type": "None"}), "no identity, said explicitly"),
        (spec(identity={"type": "None"}), body(identity={"type": "none"}), "None in lower case"),
    ],
)
def test_no_diff(wanted: AmlComputeSpec, observed: dict[str, Any], why: str) -> None:
    assert diff(wanted, observed) == ({}, []), why


@pytest.mark.parametrize(
    ("wanted", "observed", "change", "why"),
    [
        (spec(), body({"maxNodeCount": 3}), "scaleSettings.maxNodeCount 3 → 4", "a real scale change"),
        (
            spec(),
            body({"nodeIdleTimeBeforeScaleDown": "PT3M"}),
            "nodeIdleTimeBeforeScaleDown PT3M → 120s",
            "a real idle-time change",
        ),
        (
            spec(),
            body({"nodeIdleTimeBeforeScaleDown": "P1M"}),
            "nodeIdleTimeBeforeScaleDown P1M → 120s",
            "a month has no fixed length: not understood, so it differs",
        ),
        (
            spec(),
            body({"nodeIdleTimeBeforeScaleDown": "soon"}),
            "nodeIdleTimeBeforeScaleDown soon → 120s",
            "garbage differs",
        ),
        (
            spec(identity=USER),
            body(identity={"type": "SystemAssigned"}),
            f"identity SystemAssigned → UserAssigned {UAI}",
            "another identity",
        ),
        (spec(identity=USER), body(), f"identity None → UserAssigned {UAI}", "an identity to add"),
    ],
)
def test_diff(wanted: AmlComputeSpec, observed: dict[str, Any], change: str, why: str) -> None:
    patch, changes = diff(wanted, observed)
    assert patch, why
    assert any(change in c for c in changes), (why, changes)


def test_the_patch_body_is_2025_12_01_s_cluster_update_parameters() -> None:
    """``ClusterUpdateParameters`` at 2025-12-01 (stable/2025-12-01/examples/Compute/patch.json) nests the scale
    settings one level deeper than 2020-08-01 did: ``{properties: {properties: {scaleSettings}}}``. The identity
    travels beside it, as azureml-core's ``add_identity`` sends it."""
    patch, _ = diff(spec(identity=USER), body({"maxNodeCount": 3}))
    assert patch == {
        "properties": {
            "properties": {
                "scaleSettings": {"maxNodeCount": 4, "minNodeCount": 0, "nodeIdleTimeBeforeScaleDown": "PT120S"}
            }
        },
        "identity": {"type": "UserAssigned", "userAssignedIdentities": {UAI: {}}},
    }


@pytest.mark.parametrize(
    ("value", "seconds", "why"),
    [
        (None, None, "absent"),
        ("", None, "empty"),
        ("PT2M", 120, "minutes"),
        ("PT1H30M", 5400, "hours and minutes"),
        ("P1D", 86400, "a day"),
        ("P1W", 604800, "a week"),
        ("PT90.5S", 90, "fractional seconds, truncated"),
        ("P1Y", None, "a year has no fixed length"),
        ("120", None, "a bare number is not ISO-8601"),
    ],
)
def test_parse_duration(value: str | None, seconds: int | None, why: str) -> None:
    assert parse_duration(value) == seconds, why
