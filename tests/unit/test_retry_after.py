"""``amlops.retry_after``: the one Retry-After parser every client uses (ARM, Batch, Blob, the apiserver)."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from amlops import retry_after
from amlops.azure.pipeline import CappedRetryPolicy
from amlops.handlers.kube_api import MAX_RETRY_AFTER, _retry_after

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 29, 8, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected", "why"),
    [
        (None, None, "absent: the caller's own backoff"),
        ("", None, "empty"),
        ("   ", None, "blank"),
        ("7", 7.0, "delta-seconds"),
        (" 7 ", 7.0, "whitespace around"),
        ("0", 0.0, "retry at once"),
        ("2.5", 2.5, "fractions are accepted"),
        ("-5", None, "negative: ignored, never a tight loop"),
        ("nan", None, "not a number"),
        ("inf", None, "infinite"),
        ("1e12", 300.0, "absurdly large: capped"),
        ("3600", 300.0, "an hour: capped at the cap"),
        ("soon", None, "garbage"),
        ("Sun, 29 Nov 2026 08:00:30 GMT", 30.0, "an HTTP-date 30 s ahead"),
        ("Sun, 29 Nov 2026 07:59:00 GMT", 0.0, "an HTTP-date in the past: now"),
        ("Fri, 01 Jan 2099 00:00:00 GMT", 300.0, "a date decades ahead: capped"),
    ],
)
def test_seconds(value: str | None, expected: float | None, why: str) -> None:
    assert retry_after.seconds(value, 300.0, now=NOW) == expected, why


@pytest.mark.parametrize(
    ("value", "expected", "why"),
    [
        (None, None, "absent"),
        ("1500", 1.5, "milliseconds to seconds"),
        ("-1", None, "negative"),
        ("x", None, "garbage"),
        ("999999999", 300.0, "capped"),
    ],
)
def test_milliseconds(value: str | None, expected: float | None, why: str) -> None:
    assert retry_after.milliseconds(value, 300.0) == expected, why


@pytest.mark.parametrize(
    ("headers", "expected", "why"),
    [
        (None, None, "no response headers"),
        ({}, None, "no header"),
        ({"Retry-After": "12"}, 12.0, "seconds"),
        ({"retry-after": "12"}, 12.0, "header names are case-insensitive"),
        ({"retry-after-ms": "500", "Retry-After": "12"}, 0.5, "milliseconds win, as in azure-core"),
        ({"x-ms-retry-after-ms": "-3", "Retry-After": "4"}, 4.0, "a garbage millisecond header falls through"),
        ({"Retry-After": "100000"}, retry_after.AZURE_CAP, "the Azure cap"),
        ({"Retry-After": "-1"}, None, "negative ignored"),
    ],
)
def test_from_headers(headers: dict[str, str] | None, expected: float | None, why: str) -> None:
    assert retry_after.from_headers(headers) == expected, why


@pytest.mark.parametrize(
    ("value", "expected", "why"),
    [
        (None, 1.0, "absent: one second"),
        ("garbage", 1.0, "garbage: one second"),
        ("-4", 1.0, "negative: ignored"),
        ("0", 0.1, "at least 0.1 s"),
        ("3", 3.0, "as asked"),
        ("600", MAX_RETRY_AFTER, "the apiserver cap"),
    ],
)
def test_apiserver_retry_after(value: str | None, expected: float, why: str) -> None:
    assert _retry_after(value) == expected, why


@pytest.mark.parametrize(
    ("headers", "expected", "why"),
    [
        ({"Retry-After": "86400"}, retry_after.AZURE_CAP, "a day: capped, the SDK would sleep it inside the call"),
        ({"Retry-After": "-3"}, None, "negative: the SDK's own backoff"),
        ({"retry-after-ms": "250"}, 0.25, "milliseconds"),
        ({}, None, "none"),
    ],
)
def test_the_sdk_retry_policy_uses_the_same_parser(headers: dict[str, str], expected: float | None, why: str) -> None:
    response = SimpleNamespace(http_response=SimpleNamespace(headers=headers))  # the two attributes it reads
    assert CappedRetryPolicy().get_retry_after(response) == expected, why  # type: ignore[arg-type]
