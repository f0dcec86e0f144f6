"""The tier check: a collected test without a tier marker stops the run before anything executes."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.unit

CONFTEST = "from tests.support.tiers import pytest_collection_modifyitems  # noqa: F401\n"
INI = """
[pytest]
markers =
    unit: u
    emulator: m
    e2e: e
    tools: t
asyncio_default_fixture_loop_scope = function
"""


def test_a_test_without_a_tier_marker_stops_the_run(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makeini(INI)
    pytester.makepyfile(
        test_mixed="""
        import pytest

        @pytest.mark.e2e
        def test_tiered():
            pass

        def test_forgotten():
            pass
        """
    )
    # -m selects the tiered test only: the forgotten one must still be reported, not silently deselected.
    result = pytester.runpytest("-m", "e2e")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*tests without a tier marker*", "*test_mixed.py::test_forgotten"])
    assert "test_tiered" not in result.stderr.str()


def test_a_module_pytestmark_counts_for_every_test(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makeini(INI)
    pytester.makepyfile(
        test_module="""
        import pytest

        pytestmark = pytest.mark.unit

        def test_one():
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
