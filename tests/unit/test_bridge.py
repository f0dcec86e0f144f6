"""The handlers' pure parts: which status to diff against (StatusHistory), what to write (next_status), and
kopf's diff base kept in memory (ProcessDiffBaseStorage)."""

from __future__ import annotations

import itertools
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import kopf
import pytest

from amlops import status as st
from amlops.handlers.app import RoutineObjectLogs
from amlops.handlers.bridge import StatusHistory, fingerprint, next_status
from amlops.handlers.diffbase import ProcessDiffBaseStorage
from amlops.reconcile.outcome import Outcome

pytestmark = pytest.mark.unit

CREATING = {"lastSyncTime": "2026-01-01T00:00:00Z", "conditions": [{"type": "Ready", "status": "False"}]}
READY = {"lastSyncTime": "2026-01-01T00:00:05Z", "conditions": [{"type": "Ready", "status": "True"}]}


def test_a_body_from_before_our_last_write_is_read_as_that_write() -> None:
    history = StatusHistory().wrote(replaced={}, written=CREATING)
    assert history.known({}) == CREATING  # the timer still holds the body the create pass started from
    assert history.known(CREATING) == CREATING


def test_a_body_from_before_an_earlier_write_is_read_as_the_last_write() -> None:
    # The create pass wrote Creating, the timer (holding an empty body) wrote Ready; the watch event of the
    # Creating write arrives after that. Read as Creating, it would make the next pass write Ready again.
    history = StatusHistory().wrote(replaced={}, written=CREATING).wrote(replaced={}, written=READY)
    assert history.known(CREATING) == READY
    assert history.known({}) == READY
    assert history.known(READY) == READY


def test_a_status_amlops_never_wrote_is_taken_as_it_is() -> None:
    history = StatusHistory().wrote(replaced={}, written=CREATING)
    someone_else = {**CREATING, "lastSyncTime": "2026-01-01T00:01:00Z"}
    assert history.known(someone_else) == someone_else


def test_history_keeps_only_the_last_few_replaced_statuses() -> None:
    history = StatusHistory()
    statuses = [{"lastSyncTime": f"2026-01-01T00:00:0{i}Z"} for i in range(8)]
    for old, new in itertools.pairwise(statuses):
        history = history.wrote(replaced=old, written=new)
    assert len(history.superseded) == StatusHistory.KEEP
    assert history.known(statuses[0]) == statuses[0]  # long forgotten: taken as it is
    assert history.known(statuses[5]) == statuses[7]


def test_history_remembers_each_status_once() -> None:
    """The body had caught up with the last write when the next one replaced it: one slot, not two."""
    history = StatusHistory().wrote(replaced={}, written=CREATING).wrote(replaced=CREATING, written=READY)
    assert history.superseded == (fingerprint(CREATING), fingerprint({}))


def test_history_is_done_once_the_body_shows_the_last_write() -> None:
    history = StatusHistory().wrote(replaced={}, written=CREATING)
    assert not history.caught_up({})
    assert history.caught_up(CREATING)
    assert not StatusHistory().caught_up({})


def test_fingerprints_tell_statuses_apart_whatever_their_key_order() -> None:
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint(CREATING) != fingerprint(READY)


def _synced(ago: timedelta) -> str:
    return st.now_iso(datetime.now(UTC) - ago)


def test_a_pass_that_learns_nothing_new_writes_nothing() -> None:
    first, events = next_status(Outcome(conditions=tuple(st.ready())), {}, 1, None)
    assert first is not None
    assert [e.reason for e in events] == ["Succeeded"]
    current: dict[str, Any] = {**first, "lastSyncTime": _synced(timedelta(seconds=10))}
    again = Outcome(conditions=tuple(st.ready()), status={"lastSyncTime": _synced(timedelta(0))})
    assert next_status(again, current, 1, None) == (None, [])


def test_a_stale_sync_time_or_a_new_generation_is_written_without_an_event() -> None:
    first, _ = next_status(Outcome(conditions=tuple(st.ready())), {}, 1, None)
    assert first is not None
    stale = {**first, "lastSyncTime": _synced(timedelta(minutes=6))}
    refreshed, events = next_status(
        Outcome(conditions=tuple(st.ready()), status={"lastSyncTime": _synced(timedelta(0))}), stale, 1, None
    )
    assert refreshed is not None
    assert events == []
    newer, events = next_status(Outcome(conditions=tuple(st.ready())), first, 2, None)
    assert newer is not None
    assert newer["observedGeneration"] == 2
    assert events == []


def test_a_reconcile_request_is_acknowledged_once() -> None:
    first, _ = next_status(Outcome(conditions=tuple(st.ready())), {}, 1, "2026-01-01T00:00:00Z")
    assert first is not None
    assert first["lastHandledReconcileAt"] == "2026-01-01T00:00:00Z"
    assert next_status(Outcome(conditions=tuple(st.ready())), first, 1, "2026-01-01T00:00:00Z") == (None, [])


def _body(uid: str, annotations: dict[str, str] | None = None) -> kopf.Body:
    return kopf.Body({"metadata": {"uid": uid, "name": uid, "annotations": annotations or {}}, "spec": {"a": uid}})


def test_the_diff_base_is_kept_in_memory_and_never_patched() -> None:
    storage = ProcessDiffBaseStorage(prefix="kopf.amlops.io", key="last-handled-configuration")
    body = _body("u1")
    assert storage.fetch(body=body) is None  # unknown: kopf treats the object as created, one full pass
    essence = storage.build(body=body)
    patch = kopf.Patch()
    storage.store(body=body, patch=patch, essence=essence)
    assert not patch  # no PATCH, no watch event
    assert storage.fetch(body=body) == {"spec": {"a": "u1"}}
    storage.forget("u1")
    assert storage.fetch(body=body) is None


def test_the_diff_base_drops_the_least_recently_handled_beyond_its_limit() -> None:
    storage = ProcessDiffBaseStorage(prefix="kopf.amlops.io", key="last-handled-configuration", limit=2)
    for uid in ("u1", "u2"):
        storage.store(body=_body(uid), patch=kopf.Patch(), essence=storage.build(body=_body(uid)))
    assert storage.fetch(body=_body("u1")) is not None  # u1 is now the most recently used
    storage.store(body=_body("u3"), patch=kopf.Patch(), essence=storage.build(body=_body("u3")))
    assert len(storage) == 2
    assert storage.fetch(body=_body("u2")) is None
    assert storage.fetch(body=_body("u1")) is not None


def test_an_annotation_left_by_earlier_builds_is_removed_once() -> None:
    storage = ProcessDiffBaseStorage(prefix="kopf.amlops.io", key="last-handled-configuration")
    legacy = _body("u1", {"kopf.amlops.io/last-handled-configuration": '{"spec":{"a":"old"}}\n'})
    patch = kopf.Patch()
    storage.store(body=legacy, patch=patch, essence=storage.build(body=legacy))
    assert patch == {"metadata": {"annotations": {"kopf.amlops.io/last-handled-configuration": None}}}
    assert storage.fetch(body=legacy) == {"spec": {"a": "u1"}}  # the annotation is not part of the essence


def test_the_essence_is_what_kopf_builds_without_copying_the_whole_body() -> None:
    body = kopf.Body(
        {
            "apiVersion": "amlops.io/v1alpha1",
            "kind": "AmlCompute",
            "metadata": {
                "name": "c",
                "uid": "u",
                "resourceVersion": "7",
                "labels": {"team": "ml"},
                "annotations": {
                    "amlops.io/paused": "true",
                    "kopf.amlops.io/last-handled-configuration": "{}",
                    "kubectl.kubernetes.io/last-applied-configuration": "{}",
                },
                # kopf's RawMeta omits managedFields, which every object from an apiserver carries.
                "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],  # type: ignore[typeddict-unknown-key]
                "finalizers": ["amlops.io/finalizer"],
            },
            "spec": {"vmSize": "STANDARD_D1_V2", "scaleSettings": {"maxNodeCount": 2}},
            "status": {"provisioningState": "Succeeded"},
        }
    )
    ours = ProcessDiffBaseStorage(prefix="kopf.amlops.io", key="last-handled-configuration")
    kopfs = kopf.AnnotationsDiffBaseStorage(prefix="kopf.amlops.io", key="last-handled-configuration")
    assert ours.build(body=body) == kopfs.build(body=body)
    assert ours.build(body=body) == {
        "metadata": {"labels": {"team": "ml"}, "annotations": {"amlops.io/paused": "true"}},
        "spec": {"vmSize": "STANDARD_D1_V2", "scaleSettings": {"maxNodeCount": 2}},
    }


@pytest.mark.parametrize(
    ("message", "level", "kept_quiet", "kept_verbose"),
    [
        ("Handler 'reconcile' succeeded.", logging.INFO, False, True),
        ("Handler 'queue' succeeded.", logging.INFO, False, True),
        ("Creation is processed: 1 succeeded; 0 failed.", logging.INFO, False, True),
        ("Updating is processed: 0 succeeded; 1 failed.", logging.INFO, True, True),
        ("Deletion is processed: 1 succeeded; 10 failed.", logging.INFO, True, True),
        ("Handler 'finalize' failed temporarily: deleting", logging.ERROR, False, True),
        ("Handler 'reconcile' failed with an exception. Will retry.", logging.ERROR, True, True),
        ("Handler 'reconcile' failed temporarily: ConnectionResetError", logging.ERROR, True, True),
    ],
)
def test_routine_object_logs_go_to_debug(message: str, level: int, kept_quiet: bool, kept_verbose: bool) -> None:
    for verbose, kept in ((False, kept_quiet), (True, kept_verbose)):
        record = logging.LogRecord("kopf.objects", level, __file__, 1, message, None, None)
        assert RoutineObjectLogs(verbose=verbose).filter(record) is kept
        routine = not kept_quiet
        assert record.levelno == (logging.DEBUG if routine else level)


def test_an_outcomes_own_events_are_posted_even_when_no_condition_changes() -> None:
    first, _ = next_status(Outcome(conditions=tuple(st.ready())), {}, 1, None)
    assert first is not None
    warning = st.EventRecord("Warning", "ComputeGone", "the pool pj-1 may remain")
    new, events = next_status(Outcome(conditions=tuple(st.ready()), events=(warning,)), first, 1, None)
    assert new is not None
    assert events == [warning]
