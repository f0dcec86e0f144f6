"""What the external clients need from Kubernetes, as small protocols the handlers implement."""

from __future__ import annotations

from typing import Protocol


class SecretReader(Protocol):
    async def read(self, namespace: str, name: str) -> dict[str, str] | None:
        """The Secret's decoded data, or None when it does not exist."""
        ...
