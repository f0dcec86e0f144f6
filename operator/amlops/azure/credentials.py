"""Azure credentials: a Secret's service principal, the operator's default identity, or a static token."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from azure.core.credentials import AccessToken
from azure.core.credentials_async import AsyncTokenCredential
from azure.identity.aio import ClientSecretCredential, DefaultAzureCredential

from amlops.reconcile.errors import TerminalError

SECRET_KEYS = ("AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET")
REASON_CREDENTIALS_MISSING = "CredentialsMissing"


class StaticTokenCredential:
    """An AsyncTokenCredential that always returns one token (``AMLOPS_STATIC_TOKEN``; local emulators)."""

    def __init__(self, token: str) -> None:
        self._token = token

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self._token, int(time.time()) + 3600)

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> StaticTokenCredential:
        return self

    async def __aexit__(self, *args: object) -> None:
        return None


def from_secret(
    data: Mapping[str, str], authority: str | None = None, ca_bundle: str | None = None
) -> AsyncTokenCredential:
    """A service principal's credential. ``authority``: another identity platform host than Azure public
    cloud's (a sovereign cloud, or the emulator, whose host is not one Microsoft's instance discovery knows)."""
    missing = [k for k in SECRET_KEYS if not data.get(k)]
    if missing:
        raise TerminalError(REASON_CREDENTIALS_MISSING, f"the credentials Secret lacks {', '.join(missing)}")
    kwargs: dict[str, Any] = {"authority": authority, "disable_instance_discovery": True} if authority else {}
    if ca_bundle:
        kwargs["connection_verify"] = ca_bundle
    return ClientSecretCredential(
        data["AZURE_TENANT_ID"], data["AZURE_CLIENT_ID"], data["AZURE_CLIENT_SECRET"], **kwargs
    )


def default(static_token: str | None) -> AsyncTokenCredential:
    if static_token:
        return StaticTokenCredential(static_token)
    return DefaultAzureCredential()
