"""The token credential that the emulator accepts: a fixed bearer token, no identity provider involved.

Use it wherever the operator or a test would otherwise build ``DefaultAzureCredential``; the ARM emulator answers
any other token (or none) with ARM's 401.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

from azure.core.credentials import AccessToken

EMULATOR_TOKEN = "amlops-emulator-token"


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
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()
