"""What the external clients need from Kubernetes, as small protocols the handlers implement."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class SecretVersion:
    """Which Secret, in which version: its metadata only, never anything derived from its data."""

    uid: str
    resource_version: str


class SecretReader(Protocol):
    async def read(self, namespace: str, name: str, *, protect: bool = False) -> dict[str, str] | None:
        """The Secret's decoded data, or None when it does not exist. ``protect``: the Secret holds credentials a
        resource needs until it is deleted; give it the in-use finalizer (``CREDENTIALS_FINALIZER``) unless it
        has it or is being deleted already."""
        ...

    async def version(self, namespace: str, name: str) -> SecretVersion | None:
        """The Secret's uid and resourceVersion, or None when it does not exist."""
        ...


class ObjectReader(Protocol):
    async def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        """An amlops.io/v1alpha1 custom resource as a dict, or None when it does not exist."""
        ...

    async def list(self, plural: str, namespace: str) -> list[dict[str, Any]]:
        """Every amlops.io/v1alpha1 custom resource of a kind in a namespace."""
        ...


class ConfigMapReader(Protocol):
    async def read_config_map(self, namespace: str, name: str) -> dict[str, bytes] | None:
        """The ConfigMap's ``data`` (UTF-8 encoded) and ``binaryData`` (decoded), or None when it does not exist."""
        ...


class ObjectWriter(Protocol):
    async def delete(self, plural: str, namespace: str, name: str, uid: str) -> None:
        """Delete an amlops.io/v1alpha1 custom resource, only if it is still the object with ``uid``.
        Already gone, or replaced by a newer object of the same name: nothing happens."""
        ...


class ClusterObjects(ObjectReader, ConfigMapReader, ObjectWriter, Protocol):
    """Everything a ParallelJob needs from the cluster besides Secrets."""
