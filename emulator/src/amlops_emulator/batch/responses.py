"""Request parsing and response shapes shared by the Batch route modules.

Headers follow the recordings (azure-api-fidelity.md §4.2): a create answers 201 with an empty body and
``ETag``, ``Last-Modified``, ``DataServiceId``, ``Location``; entity GETs carry ``ETag``/``Last-Modified``
equal to the body's; lists page with ``odata.nextLink``. ``request-id`` and ``DataServiceVersion`` are added
to every response by the app's middleware.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar
from urllib.parse import quote

from aiohttp import web

from amlops_emulator.batch.agent import NodeAgent
from amlops_emulator.batch.model import Account
from amlops_emulator.batch.wire import JSON, BatchError, rfc1123
from amlops_emulator.clock import VirtualClock
from amlops_emulator.credentials import Accepts

JSON_CONTENT_TYPE = "application/json;odata=minimalmetadata"
MAX_BODY_BYTES = 1024 * 1024  # the service's request body limit (RequestBodyTooLarge)
MAX_PAGE = 1000

T = TypeVar("T")


@dataclass
class BatchService:
    """What every handler needs; stored on the application under ``SERVICE``."""

    accounts: dict[str, Account]
    agent: NodeAgent
    clock: VirtualClock
    token: Accepts  # the bearer token AAD requests must carry, or the test of one (the identity platform's)


SERVICE = web.AppKey("amlops_batch_service", BatchService)
REQUEST_ID = web.RequestKey("amlops_batch_request_id", str)


def service(request: web.Request) -> BatchService:
    return request.app[SERVICE]


def account(request: web.Request) -> Account:
    found = service(request).accounts.get(request.match_info["account"])
    if found is None:
        raise BatchError(404, "AccountNotFound", "The specified account does not exist.")
    return found


def account_url(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}/{request.match_info['account']}"


async def read_json(request: web.Request) -> JSON:
    raw = await request.read()
    if len(raw) > MAX_BODY_BYTES:
        raise BatchError(
            413,
            "RequestBodyTooLarge",
            "The request body is too large and exceeds the maximum permissible limit.",
            {"MaxLimit": str(MAX_BODY_BYTES)},
        )
    try:
        body = json.loads(raw or b"{}")
    except ValueError as exc:
        raise BatchError(400, "InvalidRequestBody", f"The request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise BatchError(400, "InvalidRequestBody", "The request body must be a JSON object.")
    return body


def json_response(body: JSON, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(body, separators=(",", ":")).encode(),
        headers={"Content-Type": JSON_CONTENT_TYPE, **(headers or {})},
    )


def entity(body: JSON, metadata_url: str) -> web.Response:
    """An entity GET: ``odata.metadata`` first, and the ETag header equal to the body's ``eTag``."""
    headers = {"ETag": str(body["eTag"]), "Last-Modified": _http_date(str(body["lastModified"]))}
    return json_response({"odata.metadata": metadata_url, **body}, headers=headers)


def created(url: str, etag: str, last_modified: datetime) -> web.Response:
    return web.Response(status=201, headers=_write_headers(url, etag, last_modified))


def accepted(url: str, etag: str, last_modified: datetime) -> web.Response:
    """202 for an action (``…/terminate``, ``…/disable``, ``…/resize``): as azure-batch's recording
    ``test_batch.pyTestBatchtest_batch_jobs[async].json`` shows, DataServiceId names the action's URL, with the
    entity's ETag and Last-Modified, and there is no Location."""
    return web.Response(
        status=202, headers={"DataServiceId": url, "ETag": etag, "Last-Modified": rfc1123(last_modified)}
    )


def deleted() -> web.Response:
    """202 for a job's DELETE: no DataServiceId, ETag or Last-Modified (the same recording)."""
    return web.Response(status=202)


def updated(url: str, etag: str, last_modified: datetime, status: int = 200) -> web.Response:
    return web.Response(status=status, headers=_write_headers(url, etag, last_modified))


def _write_headers(url: str, etag: str, last_modified: datetime) -> dict[str, str]:
    return {"DataServiceId": url, "Location": url, "ETag": etag, "Last-Modified": rfc1123(last_modified)}


def _http_date(iso_text: str) -> str:
    return rfc1123(datetime.fromisoformat(iso_text.replace("Z", "+00:00")))


def check_preconditions(request: web.Request, etag: str, last_modified: datetime) -> None:
    """If-Match / If-None-Match / If-(Un)Modified-Since: 412 on writes, 304 on reads."""
    read = request.method in ("GET", "HEAD")
    if_match = _etag_header(request, "If-Match")
    if if_match is not None and if_match not in ("*", etag):
        raise _condition_not_met()
    if_none_match = _etag_header(request, "If-None-Match")
    if if_none_match is not None and if_none_match in ("*", etag):
        raise BatchError(304, "ConditionNotMet", "Not modified.") if read else _condition_not_met()
    moment = last_modified.replace(microsecond=0)
    unmodified_since = _header_date(request, "If-Unmodified-Since")
    if unmodified_since is not None and moment > unmodified_since:
        raise _condition_not_met()
    modified_since = _header_date(request, "If-Modified-Since")
    if modified_since is not None and moment <= modified_since:
        raise BatchError(304, "ConditionNotMet", "Not modified.") if read else _condition_not_met()


def _etag_header(request: web.Request, name: str) -> str | None:
    """The ETag of a conditional header without the quotes the SDK adds (``quote_etag``)."""
    value = request.headers.get(name)
    return None if value is None else value.strip().removeprefix("W/").strip('"')


def _condition_not_met() -> BatchError:
    return BatchError(412, "ConditionNotMet", "The condition specified using HTTP conditional header(s) is not met.")


def _header_date(request: web.Request, name: str) -> datetime | None:
    value = request.headers.get(name)
    if value is None:
        return None
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError) as exc:
        raise BatchError(400, "InvalidHeaderValue", f"The value of {name} is invalid.", {"HeaderName": name}) from exc


# --------------------------------------------------------------------------------------------- lists

_CLAUSE = re.compile(
    r"^\s*(?:(?P<field>[\w/]+)\s+eq\s+'(?P<value>[^']*)'|startswith\((?P<sfield>[\w/]+),\s*'(?P<prefix>[^']*)'\))\s*$"
)


def odata_filter(text: str | None) -> Callable[[JSON], bool]:
    """The subset of ``$filter`` the emulator understands: ``f eq 'v'`` and ``startswith(f,'v')``, joined by ``and``.

    Anything else is refused with 400 rather than ignored, so a caller never mistakes an unfiltered list
    for a filtered one.
    """
    if not text:
        return lambda _item: True
    clauses: list[Callable[[JSON], bool]] = []
    for part in re.split(r"\s+and\s+", text.strip()):
        match = _CLAUSE.match(part)
        if match is None:
            raise BatchError(
                400,
                "InvalidQueryParameterValue",
                "The value for one of the query parameters specified in the request URI is invalid.",
                {
                    "QueryParameterName": "$filter",
                    "QueryParameterValue": text,
                    "Reason": "not supported by the emulator",
                },
            )
        if match["field"]:
            clauses.append(_equals(match["field"].split("/"), match["value"]))
        else:
            clauses.append(_starts_with(match["sfield"].split("/"), match["prefix"]))
    return lambda item: all(clause(item) for clause in clauses)


def _equals(path: Sequence[str], value: str) -> Callable[[JSON], bool]:
    return lambda item: _lookup(item, path) == value


def _starts_with(path: Sequence[str], prefix: str) -> Callable[[JSON], bool]:
    return lambda item: str(_lookup(item, path) or "").startswith(prefix)


def _lookup(item: JSON, path: Sequence[str]) -> object:
    value: object = item
    for name in path:
        if not isinstance(value, dict):
            return None
        value = value.get(name)
    return None if value is None else str(value) if not isinstance(value, bool) else str(value).lower()


def page(request: web.Request, items: Sequence[T], render: Callable[[T], JSON], metadata_url: str) -> web.Response:
    """One page of a list: ``maxresults`` (≤ 1000), ``$filter``, ``$select`` and an ``odata.nextLink``."""
    query = request.rel_url.query
    try:
        size = min(int(query.get("maxresults", MAX_PAGE)), MAX_PAGE)
        start = int(query.get("$skiptoken", 0))
    except ValueError as exc:
        raise BatchError(400, "InvalidQueryParameterValue", "A paging parameter is not an integer.") from exc
    keep = odata_filter(query.get("$filter"))
    selected = [f for f in query.get("$select", "").split(",") if f]
    values: list[JSON] = []
    position = start
    while position < len(items) and len(values) < size:
        body = render(items[position])
        position += 1
        if keep(body):
            values.append({k: v for k, v in body.items() if k in selected} if selected else body)
    result: JSON = {"odata.metadata": metadata_url, "value": values}
    if position < len(items):
        carried = {k: query[k] for k in ("api-version", "maxresults", "$filter", "$select") if k in query}
        carried["$skiptoken"] = str(position)
        link = "&".join(f"{k}={quote(v, safe='')}" for k, v in carried.items())
        result["odata.nextLink"] = f"{request.scheme}://{request.host}{request.path}?{link}"
    return json_response(result)
