"""The workspace's storage account: an Azurite blob service, named as Azure names a storage account.

Clients reach it at its production-style URL ``https://{account}.blob.{suffix}``: ``suffix`` is what goes in
azure-ai-ml's ``cloud_metadata["storage_endpoint"]`` and in the datastore's ``endpoint``, e.g.
``core.localhost:41234``. It keeps ``core.`` because azure-storage-blob finds a shared-key account's name only in
a host ``{account}.blob.core.{...}`` (as in ``core.windows.net``); :mod:`amlops_emulator.loopback_proxy` says how
that name reaches Azurite. The emulator itself talks to Azurite at its IP-style URL (``service_url``), to create
the containers Azure would create: the workspace's default blob container, and one container per pending upload.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import ContainerSasPermissions, generate_container_sas
from azure.storage.blob.aio import BlobServiceClient

SAS_HOURS = 24


@dataclass(frozen=True)
class StorageAccount:
    name: str
    key: str
    suffix: str  # the storage endpoint suffix: https://{name}.blob.{suffix}, e.g. core.localhost:41234
    service_url: str  # where the emulator itself reaches Azurite: https://127.0.0.1:{port}/{name}
    ca_file: str | None = None  # the CA Azurite's certificate is checked against (https service_url)

    @property
    def blob_url(self) -> str:
        """The account URL clients use, as azure-ai-ml builds it (``STORAGE_ACCOUNT_URLS['AzureBlob']``)."""
        return f"https://{self.name}.blob.{self.suffix}"

    def arm_id(self, subscription: str, resource_group: str) -> str:
        group = f"/subscriptions/{subscription}/resourceGroups/{resource_group}"
        return f"{group}/providers/Microsoft.Storage/storageAccounts/{self.name}"

    def container_sas(self, container: str, now: datetime | None = None) -> str:
        """A container SAS (read, add, create, write, list) as a pending upload hands out."""
        start = now or datetime.now(UTC)
        return generate_container_sas(
            account_name=self.name,
            container_name=container,
            account_key=self.key,
            permission=ContainerSasPermissions(read=True, add=True, create=True, write=True, list=True),
            expiry=start + timedelta(hours=SAS_HOURS),
            start=start - timedelta(minutes=5),
        )

    async def create_container(self, container: str) -> None:
        """Create ``container`` in Azurite; one that exists is left as it is."""
        async with self._client() as client:
            with contextlib.suppress(ResourceExistsError):
                await client.create_container(container)

    def _client(self) -> BlobServiceClient:
        verify: bool | str = self.ca_file if self.ca_file else True
        credential = {"account_name": self.name, "account_key": self.key}
        return BlobServiceClient(self.service_url, credential=credential, connection_verify=verify)

    def locate(self, uri: str) -> tuple[str, str]:
        """(container, blob prefix) of a blob URL of this account (``https://{name}.blob.{suffix}/{c}/{p}``)."""
        if not uri.startswith(self.blob_url + "/"):
            raise ValueError(f"'{uri}' is not in the storage account '{self.name}'")
        container, _, prefix = uri.removeprefix(self.blob_url + "/").partition("/")
        return container, prefix.strip("/")

    async def download(self, container: str, prefix: str, target: Path) -> int:
        """Every blob under ``prefix`` into ``target``, at its path below the prefix; answers how many."""
        count = 0
        async with self._client() as client:
            blobs = client.get_container_client(container)
            start = f"{prefix}/" if prefix else ""
            async for blob in blobs.list_blobs(name_starts_with=start or None):
                stream = await blobs.download_blob(blob.name)
                await asyncio.to_thread(_write, target / blob.name.removeprefix(start), await stream.readall())
                count += 1
        return count

    async def download_file(self, container: str, name: str, target: Path) -> bool:
        """The blob ``name`` into the file ``target``; False (nothing written) when there is no such blob."""
        async with self._client() as client:
            try:
                stream = await client.get_container_client(container).download_blob(name)
            except ResourceNotFoundError:
                return False
            await asyncio.to_thread(_write, target, await stream.readall())
        return True

    async def upload(self, source: Path, container: str, prefix: str) -> None:
        """Every file under ``source`` to ``{prefix}/{its relative path}`` (overwriting)."""
        async with self._client() as client:
            blobs = client.get_container_client(container)
            for path in await asyncio.to_thread(_files, source):
                name = f"{prefix.strip('/')}/{path.relative_to(source).as_posix()}"
                await blobs.upload_blob(name, await asyncio.to_thread(path.read_bytes), overwrite=True)

    async def upload_files(self, files: Mapping[str, bytes], container: str, prefix: str) -> None:
        """Each ``files`` entry to ``{prefix}/{its name}`` (overwriting)."""
        async with self._client() as client:
            blobs = client.get_container_client(container)
            for name, content in files.items():
                await blobs.upload_blob(f"{prefix.strip('/')}/{name}", content, overwrite=True)


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def _write(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
