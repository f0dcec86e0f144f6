"""Wire conventions of the Batch data plane: OData error bodies, timestamps, ISO-8601 durations, ETags.

Everything here follows azure-api-fidelity.md §4.3: errors are ``{"odata.metadata", "code", "message": {"lang",
"value"}, "values": [{"key", "value"}]}`` (not ARM's ``{"error": ...}``), and ``message.value`` ends with the
request id and time as the real service writes them.
"""

from __future__ import annotations

import itertools
import re
from datetime import datetime, timedelta
from email.utils import format_datetime
from typing import Any

JSON = dict[str, Any]

# TimeSpan.MaxValue, the service's way of writing "unlimited" (job and task maxWallClockTime, retentionTime).
UNLIMITED_DURATION = "P10675199DT2H48M5.4775807S"
ERROR_METADATA = "$metadata#Microsoft.Azure.Batch.Protocol.Entities.Container.errors/@Element"


class BatchError(Exception):
    """An error response: raised by handlers, rendered by the app's middleware as an OData body."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        values: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.values = values or {}
        self.headers = headers or {}

    def body(self, account_url: str, request_id: str, now: datetime) -> JSON:
        body: JSON = {
            "odata.metadata": f"{account_url}/{ERROR_METADATA}",
            "code": self.code,
            "message": {"lang": "en-US", "value": message_value(self.message, request_id, now)},
        }
        if self.values:
            body["values"] = [{"key": k, "value": v} for k, v in self.values.items()]
        return body


def message_value(message: str, request_id: str, now: datetime) -> str:
    return f"{message}\nRequestId:{request_id}\nTime:{iso(now)}"


def not_found(kind: str) -> BatchError:
    """404 ``PoolNotFound`` / ``JobNotFound`` / ``TaskNotFound`` / ``NodeNotFound``."""
    return BatchError(404, f"{kind}NotFound", f"The specified {kind.lower()} does not exist.")


def already_exists(kind: str) -> BatchError:
    return BatchError(409, f"{kind}Exists", f"The specified {kind.lower()} already exists.")


def missing_property(name: str) -> BatchError:
    return BatchError(
        400,
        "MissingRequiredProperty",
        "A required property was not specified in the request body.",
        {"PropertyName": name},
    )


def invalid_property(name: str, value: object, reason: str) -> BatchError:
    return BatchError(
        400,
        "InvalidPropertyValue",
        "The value provided for one of the properties in the request body is invalid.",
        {"PropertyName": name, "PropertyValue": str(value), "Reason": reason},
    )


def iso(moment: datetime) -> str:
    """``2024-01-01T00:00:00.1234567Z``: the service writes seven fractional digits; six is what Python has."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def rfc1123(moment: datetime) -> str:
    return format_datetime(moment, usegmt=True)


_DURATION = re.compile(
    r"^P(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)


def parse_duration(text: str) -> timedelta:
    """ISO-8601 durations as the SDK serialises ``timedelta`` (``PT1H``, ``P1DT2H3M4.5S``, ``P7D``)."""
    match = _DURATION.match(text)
    if not match or text in ("P", "PT") or text.endswith("T"):
        raise ValueError(f"not an ISO-8601 duration: {text!r}")
    parts = {k: float(v) for k, v in match.groupdict().items() if v}
    return timedelta(**parts)


def duration_seconds(text: str | None) -> float | None:
    """Seconds of a duration, ``None`` for absent or unlimited (anything of a year or more)."""
    if text is None:
        return None
    seconds = parse_duration(text).total_seconds()
    return None if seconds >= 365 * 86400 else seconds


_etags = itertools.count(0x8DBCEEDDE3E0ACE)


def new_etag() -> str:
    """A fresh ETag in the service's shape (``0x8DBCEEDDE3E0ACE``); unique for the life of the process."""
    return f"0x{next(_etags):X}"
