"""The one ``Retry-After`` parser: every client that honours the header (ARM, Batch, Blob, the apiserver) asks here.

A server's hint is trusted only within reason: a delay is a number of seconds (RFC 9110 §10.2.3, or the
``retry-after-ms``/``x-ms-retry-after-ms`` milliseconds Azure adds) or an HTTP-date, and is capped by the
caller, so a garbage, negative or absurd value (``-5``, ``nan``, ``1e12``, a date in 2099) can neither make a
tight loop nor park an object for a year. Standard library only: every layer may import it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# Azure: Retry-After hints beyond five minutes are not honoured as such; the work queue looks again by then.
AZURE_CAP = 300.0
# Headers Azure sends in milliseconds, preferred over Retry-After when present (azure-core does the same).
MILLISECOND_HEADERS = ("retry-after-ms", "x-ms-retry-after-ms")


def seconds(value: str | None, cap: float, *, now: datetime | None = None) -> float | None:
    """``Retry-After``: delta-seconds or an HTTP-date → seconds to wait in ``[0, cap]``; None when absent,
    negative or not understood (the caller's own backoff applies then)."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    number = _number(text)
    if number is None:
        number = _until(text, now or datetime.now(UTC))
    return None if number is None else min(number, cap)


def milliseconds(value: str | None, cap: float) -> float | None:
    """``retry-after-ms``: milliseconds → seconds in ``[0, cap]``; None when absent, negative or garbage."""
    number = _number(value.strip()) if value else None
    return None if number is None else min(number / 1000, cap)


def from_headers(headers: Mapping[str, str] | None, cap: float = AZURE_CAP) -> float | None:
    """The delay a response asks for: the millisecond headers first, then ``Retry-After``."""
    if headers is None:
        return None
    for name in MILLISECOND_HEADERS:
        if (delay := milliseconds(_header(headers, name), cap)) is not None:
            return delay
    return seconds(_header(headers, "Retry-After"), cap)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    # aiohttp's and azure-core's header maps are case-insensitive; a plain dict (tests) may not be.
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name.lower()), None)
    return None if value is None else str(value)


def _number(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _until(text: str, now: datetime) -> float | None:
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())
