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
from amlops.handlers.bridge import StatusHistory, fingerprint, next_status, worth_writing
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


@pytest.mark.parametrize("status", [{}, {"observedGeneration": 1, "conditions": []}], ids=["new", "generation 1"])
def test_a_deferred_pass_writes_nothing_not_even_the_generation(status: dict[str, Any]) -> None:
    """It handled nothing (its write waits for ARM's budget): observedGeneration 2 would tell kstatus and Argo CD
    that generation 2 is handled."""
    assert next_status(Outcome.deferral(5.0), status, 2, "2026-11-30T06:00:00Z") == (None, [])


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


NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def _at(seconds_ago: float) -> str:
    return st.now_iso(NOW - timedelta(seconds=seconds_ago))


# Azure's details of a cluster it is creating, as a pass that finds it Creating reports them.
DETAILS = {"lastSyncTime": _at(0), "observedGeneration": 1, "provisioningState": "Creating", "resourceId": "/s/x"}
SYNCED = {"lastSyncTime": _at(0), "observedGeneration": 1}


@pytest.mark.parametrize(
    ("why", "new", "interim", "synced_ago", "written_ago", "worth"),
    [
        ("nothing but lastSyncTime, fresh", SYNCED, False, 10, None, False),
        ("nothing but lastSyncTime, 5 minutes old: the operator is seen alive", SYNCED, False, 300, None, True),
        ("nothing moved and no sync time (a kind without one)", {"observedGeneration": 1}, False, 10, None, False),
        ("not interim: a new field is written at once", DETAILS, False, 10, 10, True),
        ("interim: Azure's transitional details wait (the next pass replaces them)", DETAILS, True, 10, 10, False),
        ("interim: a paced create, written long after its read, counts from its write", DETAILS, True, 120, 5, False),
        ("interim: details a minute behind are written", DETAILS, True, 60, 60, True),
        ("interim: no write since the operator started, read a minute ago", DETAILS, True, 60, None, True),
        ("interim: a new generation is handled: written", {**DETAILS, "observedGeneration": 2}, True, 10, 10, True),
        ("interim: a reconcile request is acknowledged", {**DETAILS, "lastHandledReconcileAt": "r1"}, True, 10, 10,
         True),
        ("interim, nothing moved: the lastSyncTime rule", SYNCED, True, 10, 10, False),
    ],
)  # fmt: skip
def test_worth_writing(
    why: str, new: dict[str, Any], interim: bool, synced_ago: float, written_ago: float | None, worth: bool
) -> None:
    """The status the create pass wrote (``pendingOperation`` create) against what a later pass would write."""
    current = {"lastSyncTime": _at(synced_ago), "observedGeneration": 1, "pendingOperation": {"name": "create"}}
    new = {"pendingOperation": {"name": "create"}, **new}
    written_at = None if written_ago is None else NOW - timedelta(seconds=written_ago)
    assert worth_writing(current, new, interim=interim, written_at=written_at, now=NOW) is worth, why


def test_the_passes_that_find_azure_still_creating_fold_into_the_create_passs_write() -> None:
    """Create pass (written, Event Creating), then a pass that finds the cluster Creating: the same conditions with
    Azure's details, nothing written; then Ready: written with everything, the transition times true."""
    created = Outcome.converging(st.REASON_CREATING, "creating in Azure", 5, status={"lastSyncTime": _at(10)})
    first, events = next_status(created, {}, 1, None, None, NOW - timedelta(seconds=10))
    assert first is not None
    assert [e.reason for e in events] == ["Creating"]
    creating = Outcome.converging(
        "Creating", "Creating; allocation Steady", 5, status={"lastSyncTime": _at(0), "provisioningState": "Creating"},
        interim=True,
    )  # fmt: skip
    assert next_status(creating, first, 1, None, NOW - timedelta(seconds=10), NOW) == (None, [])
    ready = Outcome.steady(st.ready(), status={"lastSyncTime": _at(0), "provisioningState": "Succeeded"})
    last, events = next_status(ready, first, 1, None, NOW - timedelta(seconds=10), NOW)
    assert last is not None
    assert [e.reason for e in events] == ["Succeeded"]
    assert last["provisioningState"] == "Succeeded"
    times = {c["type"]: c["lastTransitionTime"] for c in last["conditions"]}
    assert times == {"Reconciling": _at(0), "Stalled": _at(10), "Ready": _at(0)}


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


def test_the_diff_base_is_kept_packed_and_diffs_as_kopf_built_it() -> None:
    """Essences are held packed (≈ 1 KB each less than as parsed dicts): what kopf reads back equals the essence
    it stored, and differs from one whose spec changed."""
    storage = ProcessDiffBaseStorage(prefix="kopf.amlops.io", key="last-handled-configuration")
    body = _body("u1")
    essence = storage.build(body=body)
    storage.store(body=body, patch=kopf.Patch(), essence=essence)
    assert all(isinstance(packed, bytes) for packed in storage._essences.values())
    assert storage.fetch(body=body) == storage.build(body=body) == essence
    changed = _body("u1")
    changed["spec"]["a"] = "u2"
    assert storage.fetch(body=changed) != storage.build(body=changed)


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
