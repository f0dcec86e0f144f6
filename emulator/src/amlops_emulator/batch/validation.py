"""Checks on request bodies, answering with the service's 400 codes (``MissingRequiredProperty``, ...)."""

from __future__ import annotations

import re

from amlops_emulator.batch.wire import JSON, BatchError, invalid_property, missing_property, parse_duration

_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def require_id(body: JSON) -> str:
    value = require(body, "id")
    if not isinstance(value, str) or not _ID.match(value):
        raise invalid_property(
            "id", value, "The id can contain letters, digits, hyphens and underscores, up to 64 characters."
        )
    return value


def require(body: JSON, name: str) -> object:
    if body.get(name) in (None, ""):
        raise missing_property(name)
    return body[name]


def integer(body: JSON, name: str, default: int, low: int, high: int) -> int:
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise invalid_property(name, value, f"The value must be an integer from {low} to {high}.")
    return value


def durations(constraints: JSON, *names: str) -> None:
    for name in names:
        value = constraints.get(name)
        if value is None:
            continue
        try:
            parse_duration(str(value))
        except ValueError as exc:
            raise invalid_property(f"constraints.{name}", value, "Not an ISO-8601 duration.") from exc


def not_emulated(name: str, value: object) -> BatchError:
    return invalid_property(name, value, "This property is not supported by the amlops Batch emulator.")
