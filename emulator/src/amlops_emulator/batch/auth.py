"""Batch request authentication: SharedKey verified for real, Entra (AAD) bearer tokens checked as ARM checks them.

The string to sign is rebuilt exactly as azure-batch 15.1.0 ``BatchSharedKeyAuthPolicy`` builds it (and as the
Batch REST docs describe): the verb, eleven standard headers (``content-length`` forced to ``0`` on a body-less
write), every ``ocp-*`` header sorted by name, ``/{account}{path}``, then each query parameter, sorted, with
its first decoded value. A wrong key therefore fails exactly where the real service would fail it.

A bearer token must be the emulator's (:func:`amlops_emulator.credentials.bearer_problem`, ARM's check too);
another one is answered 401 ``AuthenticationFailed`` with an ``AuthenticationErrorDetail`` value, the shape
Batch gives a token it does not accept (azure-sdk-for-net issue 8026: "Server failed to authenticate the
request. Make sure the value of Authorization header is formed correctly." with the token's problem as
``AuthenticationErrorDetail``), and the ``WWW-Authenticate`` challenge of a bearer 401.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable
from urllib.parse import parse_qs

from amlops_emulator.batch.wire import BatchError
from amlops_emulator.credentials import BEARER_CHALLENGE, EMULATOR_TOKEN, Accepts, bearer_problem

SIGNED_HEADERS = (
    "content-encoding",
    "content-language",
    "content-length",
    "content-md5",
    "content-type",
    "date",
    "if-modified-since",
    "if-match",
    "if-none-match",
    "if-unmodified-since",
    "range",
)


def string_to_sign(method: str, path: str, query: str, headers: Iterable[tuple[str, str]], account: str) -> str:
    """The canonical string; ``path`` is the URL path as sent (percent-encoded), ``query`` the raw query."""
    lowered = {name.lower(): value for name, value in headers if value}
    if method not in ("GET", "HEAD"):
        lowered.setdefault("content-length", "0")
    lines = [method, *(lowered.get(name, "") for name in SIGNED_HEADERS)]
    text = "\n".join(lines) + "\n"
    ocp = sorted((name, value) for name, value in lowered.items() if "ocp-" in name)
    text += "".join(f"{name}:{value}\n" for name, value in ocp)
    text += f"/{account}{path}"
    params = parse_qs(query)
    for name in sorted(params):
        if params[name][0]:
            text += f"\n{name}:{params[name][0]}"
    return text


def sign(key: str, text: str) -> str:
    digest = hmac.new(base64.b64decode(key), text.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def authenticate(
    authorization: str | None,
    account: str,
    key: str,
    method: str,
    path: str,
    query: str,
    headers: Iterable[tuple[str, str]],
    token: Accepts = EMULATOR_TOKEN,
) -> None:
    """Raise the service's error for a request that does not authenticate as ``account`` (SharedKey) or with
    the emulator's bearer ``token`` (AAD)."""
    if not authorization:
        raise BatchError(
            401,
            "MissingRequiredHeader",
            "A required header was not specified.",
            {"HeaderName": "Authorization"},
        )
    scheme, _, credential = authorization.partition(" ")
    if scheme == "Bearer":
        if bearer_problem(authorization, token) is None:
            return
        raise BatchError(
            401,
            "AuthenticationFailed",
            "Server failed to authenticate the request. Make sure the value of Authorization header is formed "
            "correctly.",
            {
                "AuthenticationErrorDetail": "The access token is invalid."
                if credential.strip()
                else "The bearer token is empty."
            },
            {"WWW-Authenticate": BEARER_CHALLENGE},
        )
    if scheme != "SharedKey":
        raise _failed(f"The authentication scheme {scheme!r} is not supported.")
    name, _, signature = credential.partition(":")
    if name != account:
        raise _failed(f"The account name {name!r} in the Authorization header does not match the URL.")
    text = string_to_sign(method, path, query, headers, account)
    try:
        expected = sign(key, text)
    except binascii.Error as exc:  # pragma: no cover - the seed validates keys
        raise _failed("The account key is not valid base64.") from exc
    if not hmac.compare_digest(expected, signature):
        raise _failed(
            f"The MAC signature found in the HTTP request '{signature}' is not the same as any computed "
            f"signature. Server used following string to sign: '{text}'."
        )


def _failed(detail: str) -> BatchError:
    return BatchError(
        403,
        "AuthenticationFailed",
        "Server failed to authenticate the request. Make sure the value of Authorization header is "
        "correctly formed including the signature.",
        {"AuthenticationErrorDetail": detail},
    )
