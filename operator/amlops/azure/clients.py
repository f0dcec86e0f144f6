"""Shared SDK clients: one per (credential, subscription), closed when the operator stops."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from azure.core.credentials_async import AsyncTokenCredential

from amlops.azure import credentials
from amlops.azure.ml import MlClient
from amlops.azure.pipeline import ThrottleBudget
from amlops.azure.pollers import Pollers
from amlops.settings import Settings

DEFAULT_CREDENTIAL = "default"


def credential_key(secret_namespace: str, secret_name: str, data: Mapping[str, str]) -> str:
    # The Secret's content is part of the key, so a rotated secret gets a new client.
    digest = hashlib.sha256("\0".join(f"{k}={data[k]}" for k in sorted(data)).encode()).hexdigest()[:16]
    return f"secret:{secret_namespace}/{secret_name}:{digest}"


class AzureClients:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.budget = ThrottleBudget()
        self.pollers = Pollers(settings.poll_floor_seconds)
        self._credentials: dict[str, AsyncTokenCredential] = {}
        self._ml: dict[tuple[str, str], MlClient] = {}

    def credential(self, key: str, secret: Mapping[str, str] | None = None) -> AsyncTokenCredential:
        cred = self._credentials.get(key)
        if cred is None:
            if secret is None:
                cred = credentials.default(self.settings.static_token)
            else:
                cred = credentials.from_secret(secret)
            self._credentials[key] = cred
        return cred

    def ml(self, key: str, subscription_id: str, secret: Mapping[str, str] | None = None) -> MlClient:
        client = self._ml.get((key, subscription_id))
        if client is None:
            client = MlClient(self.credential(key, secret), subscription_id, self.settings, self.budget)
            self._ml[(key, subscription_id)] = client
        return client

    async def close(self) -> None:
        for client in self._ml.values():
            await client.close()
        for cred in self._credentials.values():
            await cred.close()
        self._ml.clear()
        self._credentials.clear()
