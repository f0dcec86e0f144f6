"""Every test belongs to one tier (pyproject's markers): CI and ``tools/test -m ...`` select tests by tier, so
a test without one would silently run in no tier's selection. ``tests/conftest.py`` installs the hook."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

TIERS = frozenset({"unit", "emulator", "e2e", "tools"})


def untiered(items: Sequence[pytest.Item]) -> list[str]:
    """The node ids of the tests that carry none of the tier markers (module ``pytestmark`` or their own)."""
    return [item.nodeid for item in items if not TIERS & {mark.name for mark in item.iter_markers()}]


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects anything: every collected test is checked
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if missing := untiered(items):
        tiers = " | ".join(sorted(TIERS))
        listed = "\n  ".join(missing)
        raise pytest.UsageError(f"tests without a tier marker (pytestmark = pytest.mark.{tiers}):\n  {listed}")
