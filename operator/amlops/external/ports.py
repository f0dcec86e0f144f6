"""What the external clients need from Kubernetes, as small protocols the handlers implement."""

from __future__ import annotations

from typing import Any, Protocol


class SecretReader(Protocol):
    async def read(self, namespace: str, name: str) -> dict[str, str] | None:
        """The Secret's decoded data, or None when it does not exist."""
        ...


class ObjectReader(Protocol):
    async def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        """An amlops.io/v1alpha1 custom resource as a dict, or None when it does not exist."""
        ...

    async def list(self, plural: str, namespace: str) -> list[dict[str, Any]]:
        """Every amlops.io/v1alpha1 custom resource of a kind in a namespace."""
        ...
