"""The owner tag value: ``<namespace>.<name>.<uid>`` within ARM's 256-character tag limit, one comparison."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from amlops.reconcile.managed import OWNER_TAG_MAX, Managed, owner_value
from amlops.reconcile.policy import owned

pytestmark = pytest.mark.unit

UID = "0f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a"
NS63 = "n" * 63


class Spec(BaseModel):
    adopt: bool = False


NAME253 = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])  # a valid DNS subdomain of 253 characters


@pytest.mark.parametrize(
    ("namespace", "name", "expected", "why"),
    [
        ("team-a", "cpu", f"team-a.cpu.{UID}", "short names are kept whole, as before"),
        (NS63, "x" * 155, f"{NS63}.{'x' * 155}.{UID}", "exactly 256 characters: unchanged"),
    ],
)
def test_owner_value_unchanged_when_it_fits(namespace: str, name: str, expected: str, why: str) -> None:
    assert owner_value(namespace, name, UID) == expected, why
    assert len(expected) <= OWNER_TAG_MAX


@pytest.mark.parametrize(
    ("namespace", "name", "why"),
    [
        (NS63, "x" * 156, "one character too many"),
        (NS63, NAME253, "the longest namespace and name"),
        ("a", NAME253, "a short namespace and the longest name"),
    ],
)
def test_owner_value_shortens_the_name_and_keeps_namespace_and_uid(namespace: str, name: str, why: str) -> None:
    value = owner_value(namespace, name, UID)
    assert len(value) <= OWNER_TAG_MAX, why
    assert value.startswith(f"{namespace}.{name[:20]}"), why
    assert value.endswith(f".{UID}"), why
    assert owner_value(namespace, name, UID) == value, "deterministic"


def test_long_names_sharing_a_beginning_get_different_tags() -> None:
    first, second = NAME253[:-1] + "x", NAME253[:-1] + "y"
    assert owner_value(NS63, first, UID) != owner_value(NS63, second, UID)


def test_owns_is_the_one_comparison() -> None:
    mr = Managed(kind="AmlCompute", namespace=NS63, name=NAME253, uid=UID, generation=1, spec=Spec())
    assert mr.owns(mr.owner)
    assert not mr.owns(None)
    assert not mr.owns(f"{NS63}.{NAME253}.{UID}"), "an over-long value could never have been written"
    assert owned(mr, mr.owner, tagged_owner_exists=True)
    assert not owned(mr, "other.obj.uid", tagged_owner_exists=True)


@pytest.mark.parametrize(
    ("annotation", "handled", "expected", "why"),
    [
        (None, None, False, "no annotation: the shared listing serves"),
        ("2026-01-01T00:00:00Z", None, True, "a first request: read afresh"),
        ("2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z", False, "already handled: not again on every pass"),
        ("again", "2026-01-01T00:00:00Z", True, "any new value asks again"),
        ("", None, False, "an empty value asks nothing"),
    ],
)
def test_refresh_requested(annotation: str | None, handled: str | None, expected: bool, why: str) -> None:
    annotations = {} if annotation is None else {"amlops.io/reconcile-requested-at": annotation}
    status = {} if handled is None else {"lastHandledReconcileAt": handled}
    mr = Managed("AmlCompute", "ns", "cpu", UID, 1, Spec(), status=status, annotations=annotations)
    assert mr.refresh_requested is expected, why
