"""Blob storage adapter (``azure.storage.blob.aio``) for the ParallelJob data plane.

Listing a folder as a stream, ranged reads, small JSON/text writes (plain or exactly-once), block staging for
the aggregated output, blob-level account-key SAS URLs for the node driver, and code-folder uploads. Every Azure error
leaves through :func:`amlops.azure.errors.azure_errors`, except the answers that are facts here ("not found",
"already exists"), which become return values.

A folder is ``(container, prefix)``; folder URIs name the account's endpoint, as Azure and Azurite print them
(``https://acct.blob.core.windows.net/c/p`` or, path-style, ``http://127.0.0.1:10000/devstoreaccount1/c/p``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobBlock, ContentSettings, generate_blob_sas
from azure.storage.blob.aio import BlobServiceClient

from amlops.azure.errors import azure_errors
from amlops.azure.pipeline import blob_accounting, env_settings_in_use
from amlops.reconcile.errors import RetryableError, TerminalError

NEWLINE_PROBE = 64 * 1024  # bytes read per step while looking for the next line start
READ_CHUNK = 4 << 20  # bytes per ranged read when a whole blob is streamed
READ_AHEAD = 1 << 20  # bytes read at once while looking for line ends
UPLOAD_CONCURRENCY = 8
MAX_JSON_BYTES = 64 << 20  # a plan document of 500 mini-batches stays far below
JSON_TYPE = "application/json"
TEXT_TYPE = "text/plain; charset=utf-8"


@dataclass(frozen=True, slots=True)
class BlobFolder:
    container: str
    prefix: str = ""  # "" or ending in "/"

    def blob(self, name: str) -> str:
        return f"{self.prefix}{name.lstrip('/')}"

    def sub(self, path: str) -> BlobFolder:
        path = path.strip("/")
        return BlobFolder(self.container, f"{self.prefix}{path}/" if path else self.prefix)


@dataclass(frozen=True, slots=True)
class ListedBlob:
    """A blob of a listed folder; ``name`` is relative to the folder (the planner's ``InputItem`` fields)."""

    name: str
    size: int
    etag: str


class BlobStore:
    """One storage account. Create with :meth:`from_connection_string`; close with :meth:`close`."""

    def __init__(self, service: BlobServiceClient) -> None:
        self._service = service

    @classmethod
    def from_connection_string(cls, connection_string: str) -> BlobStore:
        # The storage SDK takes extra policies only through this kwarg; it appends them after its retry policy, so
        # every attempt is counted like ARM's and Batch's (amlops.azure.pipeline).
        service = BlobServiceClient.from_connection_string(
            connection_string, _additional_pipeline_policies=[blob_accounting()], use_env_settings=env_settings_in_use()
        )
        return cls(service)

    async def close(self) -> None:
        await self._service.close()

    async def __aenter__(self) -> BlobStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def url(self) -> str:
        return str(self._service.url).rstrip("/")

    def folder(self, uri: str) -> BlobFolder:
        """The folder a blob URI names on this account (``InvalidSpec`` for another account or no container)."""
        base = urlsplit(self.url)
        parts = urlsplit(uri)
        base_path = base.path.rstrip("/")
        if (parts.scheme, parts.netloc) != (base.scheme, base.netloc) or not parts.path.startswith(f"{base_path}/"):
            raise TerminalError("InvalidSpec", f"{uri!r} is not on the storage account {self.url}")
        container, _, prefix = parts.path[len(base_path) + 1 :].partition("/")
        if not container:
            raise TerminalError("InvalidSpec", f"{uri!r} names no container")
        prefix = prefix.strip("/")
        return BlobFolder(container, f"{prefix}/" if prefix else "")

    def file(self, uri: str) -> tuple[BlobFolder, str]:
        """A ``uri_file`` input as (its parent folder, its name): list the parent, keep that one name."""
        folder = self.folder(uri)
        parent, _, name = folder.prefix.rstrip("/").rpartition("/")
        if not name:
            raise TerminalError("InvalidSpec", f"{uri!r} names a container, not a file")
        return BlobFolder(folder.container, f"{parent}/" if parent else ""), name

    def folder_url(self, folder: BlobFolder) -> str:
        return f"{self.url}/{folder.container}/{quote(folder.prefix)}"

    # ------------------------------------------------------------------------------------------- reads

    async def list_folder(self, folder: BlobFolder) -> AsyncIterator[ListedBlob]:
        """Every blob under the folder, in name order, page by page (never the whole listing in memory)."""
        container = self._service.get_container_client(folder.container)
        with azure_errors():
            async for blob in container.list_blobs(name_starts_with=folder.prefix or None):
                yield ListedBlob(str(blob.name)[len(folder.prefix) :], int(blob.size), str(blob.etag).strip('"'))

    async def read(self, folder: BlobFolder, name: str, offset: int = 0, length: int | None = None) -> bytes | None:
        """The blob's bytes (a range when ``length`` is given), or None when it does not exist."""
        blob = self._service.get_blob_client(folder.container, folder.blob(name))
        with azure_errors():
            try:
                stream = await blob.download_blob(offset=offset, length=length)
                data: bytes = await stream.readall()
            except ResourceNotFoundError:
                return None
            except HttpResponseError as error:
                if error.status_code == 416:  # a range starting at or past the end: nothing there
                    return b""
                raise
        return data

    async def exists(self, folder: BlobFolder, name: str) -> bool:
        with azure_errors():
            return bool(await self._service.get_blob_client(folder.container, folder.blob(name)).exists())

    async def chunks(self, folder: BlobFolder, name: str, size: int = READ_CHUNK) -> AsyncIterator[bytes]:
        """The blob from start to end in ranged reads of ``size`` bytes: never the whole blob in memory."""
        offset = 0
        while chunk := await self.read(folder, name, offset, size):
            yield chunk
            if len(chunk) < size:
                return
            offset += len(chunk)

    async def properties(self, folder: BlobFolder, name: str) -> tuple[str, dict[str, str]] | None:
        """(etag, metadata) of the blob, or None when it does not exist."""
        blob = self._service.get_blob_client(folder.container, folder.blob(name))
        with azure_errors():
            try:
                found = await blob.get_blob_properties()
            except ResourceNotFoundError:
                return None
        return str(found.etag), dict(found.metadata or {})

    async def size(self, folder: BlobFolder, name: str) -> int | None:
        with azure_errors():
            try:
                found = await self._service.get_blob_client(folder.container, folder.blob(name)).get_blob_properties()
            except ResourceNotFoundError:
                return None
        return int(found.size)

    # ------------------------------------------------------------------------------------------- writes

    async def create_container(self, container: str) -> None:
        with azure_errors(), suppress(ResourceExistsError):
            await self._service.create_container(container)

    async def write(self, folder: BlobFolder, name: str, data: bytes, content_type: str = TEXT_TYPE) -> None:
        blob = self._service.get_blob_client(folder.container, folder.blob(name))
        with azure_errors():
            await blob.upload_blob(data, overwrite=True, content_settings=ContentSettings(content_type=content_type))

    async def write_if_absent(self, folder: BlobFolder, name: str, data: bytes, content_type: str = TEXT_TYPE) -> bool:
        """Exactly-once write (``If-None-Match: *``): True when written, False when the blob already existed."""
        blob = self._service.get_blob_client(folder.container, folder.blob(name))
        settings = ContentSettings(content_type=content_type)
        with azure_errors():
            try:
                await blob.upload_blob(data, overwrite=False, content_settings=settings)
            except ResourceExistsError:
                return False
            except HttpResponseError as error:
                if error.status_code == 412:  # the condition failed: someone wrote it first
                    return False
                raise
        return True

    async def delete_blob(self, folder: BlobFolder, name: str) -> None:
        """Delete one blob; one already gone is not an error."""
        with azure_errors(), suppress(ResourceNotFoundError):
            await self._service.get_blob_client(folder.container, folder.blob(name)).delete_blob()

    async def stage_block(self, folder: BlobFolder, name: str, block_id: str, data: bytes) -> None:
        """An uncommitted block; staging the same id again replaces it, so a retry is harmless."""
        blob = self._service.get_blob_client(folder.container, folder.blob(name))
        with azure_errors():
            await blob.stage_block(block_id, data)

    async def commit_blocks_if_absent(
        self, folder: BlobFolder, name: str, block_ids: Iterable[str], content_type: str = TEXT_TYPE
    ) -> bool:
        """Commit staged blocks as a new blob; False (and nothing changed) when the blob already exists."""
        return await self.commit_blocks(folder, name, block_ids, content_type)

    async def commit_blocks(
        self,
        folder: BlobFolder,
        name: str,
        block_ids: Iterable[str],
        content_type: str = TEXT_TYPE,
        *,
        metadata: Mapping[str, str] | None = None,
        replacing: str | None = None,
    ) -> bool:
        """Commit staged blocks as the blob: new (``If-None-Match: *``), or in place of exactly the version with
        etag ``replacing`` (``If-Match``). False, and nothing changed, when that condition fails."""
        blob = self._service.get_blob_client(folder.container, folder.blob(name))
        condition = (
            {"etag": replacing, "match_condition": MatchConditions.IfNotModified}
            if replacing
            else {"match_condition": MatchConditions.IfMissing}
        )
        with azure_errors():
            try:
                await blob.commit_block_list(
                    [BlobBlock(block_id) for block_id in block_ids],
                    content_settings=ContentSettings(content_type=content_type),
                    metadata=dict(metadata or {}),
                    **condition,
                )
            except ResourceExistsError:
                return False
            except HttpResponseError as error:
                if error.status_code in (409, 412):
                    return False
                if str(getattr(error, "error_code", "")) == "InvalidBlockList":
                    # Another writer committed this blob meanwhile, which discards blocks staged by others: stage
                    # again.
                    message = f"{folder.blob(name)} was written by another job meanwhile"
                    raise RetryableError("OutputContended", message) from None
                raise
        return True

    async def upload_directory(self, local: Path, folder: BlobFolder) -> int:
        """Every file under ``local`` (relative names kept), e.g. ``task.code`` as the job's code folder."""
        files = await asyncio.to_thread(_read_tree, local)
        await self._upload_all(folder, files)
        return len(files)

    async def upload_files(self, folder: BlobFolder, files: Mapping[str, bytes | str]) -> int:
        """Named contents, e.g. a ConfigMap's ``data``/``binaryData`` as the job's code folder."""
        await self._upload_all(folder, ((n, v.encode() if isinstance(v, str) else v) for n, v in files.items()))
        return len(files)

    async def _upload_all(self, folder: BlobFolder, files: Iterable[tuple[str, bytes]]) -> None:
        gate = asyncio.Semaphore(UPLOAD_CONCURRENCY)

        async def one(name: str, data: bytes) -> None:
            async with gate:
                await self.write(folder, name, data, "application/octet-stream")

        await asyncio.gather(*(one(name, data) for name, data in files))

    # ------------------------------------------------------------------------------------------- SAS

    def signer(self, expiry: datetime) -> BlobSigner:
        """Blob-level SAS URLs that all end at ``expiry`` (one signer per slice of tasks: see :class:`BlobSigner`)."""
        account, key = self._shared_key()
        return BlobSigner(self.url, account, key, expiry)

    def check_signing(self) -> None:
        """Refuses (``SasUnavailable``) a store that cannot sign SAS URLs: no account key, or one not base64."""
        self._shared_key()

    def _shared_key(self) -> tuple[str, str]:
        credential: Any = self._service.credential
        key = getattr(credential, "account_key", None)
        if not key:
            raise TerminalError("SasUnavailable", "SAS URLs need the storage account key (a connection string)")
        try:
            base64.b64decode(str(key), validate=True)
        except ValueError:
            raise TerminalError("SasUnavailable", "the storage account key is not base64: it cannot sign") from None
        return str(credential.account_name), str(key)


# Service SAS permissions, in the order Azure writes them: a node reads a blob, or creates/overwrites one result.
READ = "r"
WRITE = "cw"
READ_WRITE = "rcw"


class BlobSigner:
    """Least-privilege SAS URLs for Batch nodes: one blob per token (``sr=b``), never a container.

    Account-key SAS cannot be narrowed to a prefix of a flat-namespace container, so every blob a task touches
    gets its own token with only the permissions it needs. ``https`` only when the account's endpoint is https
    (Azure); Azurite over http keeps http. Each (blob, permissions) is signed once per signer, and each token is
    the SDK's for that container and permissions with the blob's own signature (:class:`SasTemplate`): two or
    more tokens a task, the SDK's ``generate_blob_sas`` each time took most of the operator's CPU in adding
    100,000 tasks (bench/paralleljob_plan_submit.py)."""

    def __init__(self, endpoint: str, account: str, key: str, expiry: datetime) -> None:
        self._endpoint, self._account, self._key, self.expiry = endpoint, account, key, expiry
        self._protocol = sas_protocol(endpoint)
        self._signed: dict[tuple[str, str, str], str] = {}
        self._templates: dict[tuple[str, str], SasTemplate] = {}
        self._key_bytes = base64.b64decode(key)

    def url(self, folder: BlobFolder, name: str, permission: str = READ) -> str:
        blob_name = folder.blob(name)
        key = (folder.container, blob_name, permission)
        url = self._signed.get(key)
        if url is None:
            template = self._templates.get((folder.container, permission))
            if template is None:
                template = self._templates[(folder.container, permission)] = SasTemplate.of(
                    self._account, folder.container, self._key, permission, self.expiry, self._protocol
                )
            token = template.token(blob_name, self._key_bytes)
            url = self._signed[key] = f"{self._endpoint}/{folder.container}/{quote(blob_name)}?{token}"
        return url


SAS_PLACEHOLDER = "amlops-sas-placeholder"


@dataclass(frozen=True)
class SasTemplate:
    """The SDK's blob SAS for one container, permissions and expiry, with the blob left open.

    A service SAS signs (HMAC-SHA256 with the account key) a string in which blobs differ only in the
    canonicalised resource ``/blob/<account>/<container>/<blob>``, and its token differs only in ``sig``, its
    last parameter: the SDK signs a placeholder blob once (its ``sts_hook`` shows the string it signed), and every
    blob's token is that one with the blob's own signature. The SDK keeps the format (version, fields, their
    order); tests/unit/test_paralleljob_sas.py checks each token equals ``generate_blob_sas``'s."""

    container_resource: str  # /blob/<account>/<container>/
    before: str  # the string to sign up to the resource
    after: str  # and after it
    token_head: str  # the token up to the signature's value

    @classmethod
    def of(
        cls, account: str, container: str, key: str, permission: str, expiry: datetime, protocol: str | None
    ) -> SasTemplate:
        signed: list[str] = []
        token = generate_blob_sas(
            account,
            container,
            SAS_PLACEHOLDER,
            account_key=key,
            permission=permission,
            expiry=expiry,
            protocol=protocol,
            sts_hook=signed.append,
        )
        resource = f"/blob/{account}/{container}/"
        before, found, after = signed[0].partition(resource + SAS_PLACEHOLDER)
        head, sig, tail = token.rpartition("&sig=")
        if not found or resource in after or not sig or "&" in tail:
            raise ValueError(f"an unexpected SAS from azure-storage-blob: {token!r}")
        return cls(resource, before, after, head + sig)

    def token(self, blob_name: str, key: bytes) -> str:
        string_to_sign = f"{self.before}{self.container_resource}{blob_name}{self.after}"
        # hmac.digest: the one-shot C HMAC (hmac.new builds a Python object per call, a third of the signing).
        digest = hmac.digest(key, string_to_sign.encode("utf-8"), "sha256")
        return self.token_head + quote_base64(base64.b64encode(digest).decode())


def quote_base64(text: str) -> str:
    """``urllib.parse.quote`` of a base64 text, as the SDK quotes a signature (``/`` kept, ``+`` and ``=``
    escaped), without quote's slow path that the padding ``=`` takes on every signature."""
    return text.replace("+", "%2B").replace("=", "%3D")


def sas_protocol(endpoint: str) -> str | None:
    """``spr``: https only against an https endpoint (Azure). None (no ``spr``: http and https, the service's
    default) for an http one (Azurite), where an https-only token could never be used."""
    return "https" if urlsplit(endpoint).scheme == "https" else None


def sas_expiry(now: datetime, deadline_seconds: int | None, lifetime: timedelta, margin: timedelta) -> datetime:
    """When the tokens of tasks added ``now`` end: the job's ``activeDeadlineSeconds`` plus a margin when it has
    one (the deadline counts from the job's start, so this outlives the job), else ``lifetime``. Tasks added
    later get later tokens, so a long job's tokens are renewed slice by slice."""
    if deadline_seconds:
        return now + timedelta(seconds=deadline_seconds) + margin
    return now + lifetime


class JsonFolder:
    """A folder of JSON documents: the planner's ``ManifestStore`` port."""

    def __init__(self, store: BlobStore, folder: BlobFolder) -> None:
        self.store, self.folder = store, folder

    async def get_json(self, name: str) -> dict[str, Any] | None:
        data = await self.store.read(self.folder, name, 0, MAX_JSON_BYTES + 1)
        if data is None:
            return None
        if len(data) > MAX_JSON_BYTES:  # the folder is writable by the tenant's own code: never read it whole
            raise TerminalError("InvalidJson", f"{self.folder.blob(name)} is larger than {MAX_JSON_BYTES} bytes")
        try:
            doc = json.loads(data)
        except (ValueError, RecursionError) as e:
            raise TerminalError("InvalidJson", f"{self.folder.blob(name)} is not JSON: {str(e)[:200]}") from None
        if not isinstance(doc, dict):
            raise TerminalError("InvalidJson", f"{self.folder.blob(name)} is not a JSON object")
        return doc

    async def put_json(self, name: str, doc: dict[str, Any]) -> None:
        await self.store.write(self.folder, name, json.dumps(doc, separators=(",", ":")).encode(), JSON_TYPE)


class BlobRangeReader:
    """The planner's ``RangeReader`` port. Planning looks for line ends at increasing offsets of one file after
    another, so one read-ahead window serves many consecutive look-ups (small mini-batches of a large file
    would otherwise cost one request each)."""

    def __init__(self, store: BlobStore, folder: BlobFolder, probe: int = NEWLINE_PROBE) -> None:
        self.store, self.folder, self.probe = store, folder, probe
        self._window: tuple[str, int, bytes] = ("", 0, b"")

    async def find_newline(self, name: str, offset: int, limit: int) -> int | None:
        """The first ``\\n`` in ``[offset, offset + limit)``, or None: a bounded scan, whatever the line."""
        end = offset + limit
        while offset < end:
            chunk = await self._read(name, offset)
            if not chunk:
                return None
            found = chunk.find(b"\n", 0, end - offset)
            if found >= 0:
                return offset + found
            if len(chunk) < self.probe:
                return None
            offset += len(chunk)
        return None

    async def head(self, name: str) -> bytes:
        """The blob's first ``READ_AHEAD`` bytes, kept as the window (the line ends looked for next are there)."""
        await self._read(name, 0)
        held, start, data = self._window
        return data if held == name and start == 0 else b""

    async def _read(self, name: str, offset: int) -> bytes:
        """At least ``probe`` bytes from ``offset`` (fewer only at the end), from the window when it has them."""
        held, start, data = self._window
        if held == name and start <= offset and (offset + self.probe <= start + len(data) or len(data) < READ_AHEAD):
            return data[offset - start : offset - start + self.probe] if offset - start < len(data) else b""
        data = await self.store.read(self.folder, name, offset, READ_AHEAD) or b""
        self._window = (name, offset, data)
        return data[: self.probe]

    def chunks(self, name: str) -> AsyncIterator[bytes]:
        return self.store.chunks(self.folder, name)


def _read_tree(local: Path) -> list[tuple[str, bytes]]:
    # Code folders are small: read whole, off the event loop.
    return [(p.relative_to(local).as_posix(), p.read_bytes()) for p in sorted(local.rglob("*")) if p.is_file()]


def block_id(number: int, writer: str = "") -> str:
    """Block ids of one blob must all have the same length: a fixed-width writer tag and number, base64-encoded.
    The tag keeps two writers of one blob (two jobs sharing an output folder) from staging over each other."""
    tag = hashlib.sha256(writer.encode()).hexdigest()[:16]
    return base64.b64encode(f"{tag}-{number:012d}".encode()).decode()
