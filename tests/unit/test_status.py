"""Conditions: transition times move only on status changes; events only on changes; warnings for Stalled."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from amlops import status as st

pytestmark = pytest.mark.unit
T0 = datetime(2026, 1, 1, tzinfo=UTC)
T1 = datetime(2026, 1, 1, 0, 5, tzinfo=UTC)


def test_new_conditions_are_appended_with_generation_and_one_event_for_the_pass() -> None:
    updates = [*st.progressing("Creating", "creating cluster"), st.ConditionUpdate("QuotaSufficient", "True", "Quota")]
    conditions, events = st.set_conditions([], updates, 3, T0)
    assert [c["type"] for c in conditions] == ["Reconciling", "Stalled", "Ready", "QuotaSufficient"]
    assert all(c["observedGeneration"] == 3 and c["lastTransitionTime"] == "2026-01-01T00:00:00Z" for c in conditions)
    assert [(e.type, e.reason, e.message) for e in events] == [
        (
            "Normal",
            "Creating",
            "Reconciling=True: creating cluster; Stalled=False; Ready=False: creating cluster; "
            "QuotaSufficient=True (Quota)",
        )
    ]


def test_same_status_keeps_transition_time_and_emits_nothing() -> None:
    first, _ = st.set_conditions([], st.ready(), 1, T0)
    second, events = st.set_conditions(first, st.ready(), 2, T1)
    assert [c["lastTransitionTime"] for c in second] == [c["lastTransitionTime"] for c in first]
    assert [c["observedGeneration"] for c in second] == [2, 2, 2]
    assert events == []


def test_status_change_moves_transition_time_and_stalled_true_is_a_warning() -> None:
    first, _ = st.set_conditions([], st.ready(), 1, T0)
    second, events = st.set_conditions(first, st.stalled("QuotaExceeded", "needs 32 cores, 8 left"), 1, T1)
    stalled = st.find(second, "Stalled")
    assert stalled is not None
    assert stalled["lastTransitionTime"] == "2026-01-01T00:05:00Z"
    assert st.is_true(second, "Stalled")
    assert not st.is_true(second, "Ready")
    warnings = [e for e in events if e.type == "Warning"]
    assert [(e.reason, e.message.split("; ")[0]) for e in warnings] == [
        ("QuotaExceeded", "Stalled=True: needs 32 cores, 8 left")
    ]


def test_message_change_alone_updates_the_condition_without_an_event() -> None:
    first, _ = st.set_conditions([], [st.ConditionUpdate("Reconciling", "True", "Creating", "1/4 nodes")], 1, T0)
    second, events = st.set_conditions(
        first, [st.ConditionUpdate("Reconciling", "True", "Creating", "2/4 nodes")], 1, T1
    )
    assert second[0]["lastTransitionTime"] == first[0]["lastTransitionTime"]
    assert second[0]["message"] == "2/4 nodes"
    assert events == []


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        pytest.param("2026-01-02T03:04:05Z", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), id="what amlops writes"),
        pytest.param(
            "2022-08-30T19:56:28.2261097+00:00",
            datetime(2022, 8, 30, 19, 56, 28, 226109, tzinfo=UTC),
            id="ARM: seven fractional digits and an offset",
        ),
        pytest.param("2023-09-07T07:17:50.4424278Z", datetime(2023, 9, 7, 7, 17, 50, 442427, tzinfo=UTC), id="Batch"),
        pytest.param("2026-01-02T03:04:05", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), id="no zone means UTC"),
        pytest.param("yesterday", None, id="garbage"),
        pytest.param(None, None, id="absent"),
    ],
)
def test_parse_time(stamp: str | None, expected: datetime | None) -> None:
    assert st.parse_time(stamp) == expected


def test_now_iso_round_trips_through_parse_time() -> None:
    moment = datetime(2026, 11, 29, 10, 0, 1, tzinfo=UTC)
    assert st.now_iso(moment) == "2026-11-29T10:00:01Z"
    assert st.parse_time(st.now_iso(moment)) == moment
