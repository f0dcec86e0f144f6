"""The token credential that the emulator accepts: a fixed bearer token, no identity provider involved.

Use it wherever the operator or a test would otherwise build ``DefaultAzureCredential``; the ARM emulator answers
any other token (or none) with ARM's 401.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Literal

from azure.core.credentials import AccessToken

EMULATOR_TOKEN = "amlops-emulator-token"
# Where the service would send the caller for a token (ARM's WWW-Authenticate challenge on a 401).
BEARER_CHALLENGE = 'Bearer authorization_uri="https://login.microsoftonline.com/common", error="invalid_token"'

BearerProblem = Literal["missing", "malformed", "invalid"]
# The token a service accepts, or a test of it (the identity platform's: its own tokens and the fixed one).
Accepts = str | Callable[[str], bool]


def bearer_problem(authorization: str | None, accepts: Accepts) -> BearerProblem | None:
    """What is wrong with an ``Authorization`` header that should carry a token the emulator accepts, or None.

    The one check of both halves: ARM and Batch (AAD mode) accept :data:`EMULATOR_TOKEN` (or the configured
    token) and the tokens the emulator's identity platform issued, and render the problem in their own error
    shapes."""
    if authorization is None:
        return "missing"
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return "malformed"
    token = value.strip()
    return None if (accepts(token) if callable(accepts) else token == accepts) else "invalid"


class EmulatorCredential:
    """An ``azure.core.credentials_async.AsyncTokenCredential`` returning :data:`EMULATOR_TOKEN`."""

    def __init__(self, token: str = EMULATOR_TOKEN) -> None:
        self._token = token

    async def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        return AccessToken(self._token, int(time.time()) + 3600)

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> EmulatorCredential:
        return self

    async def __aexit__(
        self,
        # Defaults as AsyncTokenCredential declares them: without, this is no AsyncTokenCredential to mypy.
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self.close()
