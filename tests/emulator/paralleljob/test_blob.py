"""The blob adapter against Azurite: URIs, exactly-once writes, ranged reads, newline probes, uploads."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.error import HTTPError
from urllib.request import Request, urlopen

import pytest

from amlops.azure.blob import READ_WRITE, BlobFolder, BlobRangeReader, BlobStore, ListedBlob
from amlops.reconcile.errors import TerminalError

pytestmark = pytest.mark.emulator


async def test_folder_and_file_uris_of_the_account(store: BlobStore) -> None:
    assert store.folder(f"{store.url}/data/a/b/") == BlobFolder("data", "a/b/")
    assert store.folder(f"{store.url}/data") == BlobFolder("data", "")
    assert store.file(f"{store.url}/data/a/b.csv") == (BlobFolder("data", "a/"), "b.csv")
    with pytest.raises(TerminalError) as caught:
        store.folder("https://elsewhere.blob.core.windows.net/data/a")
    assert caught.value.reason == "InvalidSpec"


async def test_listing_is_relative_to_the_folder_and_in_name_order(store: BlobStore) -> None:
    folder = BlobFolder("data", "listing/")
    await store.upload_files(folder, {"b/2.txt": b"22", "a.txt": "1"})
    await store.write(BlobFolder("data", "listing-other/"), "x.txt", b"not in the folder")

    listed = [blob async for blob in store.list_folder(folder)]

    assert [(b.name, b.size) for b in listed] == [("a.txt", 1), ("b/2.txt", 2)]
    assert all(isinstance(b, ListedBlob) and b.etag and '"' not in b.etag for b in listed)


async def test_write_if_absent_writes_exactly_once(store: BlobStore) -> None:
    folder = BlobFolder("out", "once/")

    assert await store.write_if_absent(folder, "marker", b"first")
    assert not await store.write_if_absent(folder, "marker", b"second")
    assert await store.read(folder, "marker") == b"first"


async def test_ranged_reads_and_missing_blobs(store: BlobStore) -> None:
    folder = BlobFolder("data", "ranges/")
    await store.write(folder, "r.txt", b"0123456789")

    assert await store.read(folder, "r.txt", 3, 4) == b"3456"
    assert await store.read(folder, "r.txt", 10, 4) == b""
    assert await store.read(folder, "missing.txt") is None
    assert await store.size(folder, "r.txt") == 10


async def test_newlines_are_found_across_probe_boundaries(store: BlobStore) -> None:
    folder = BlobFolder("data", "lines/")
    await store.write(folder, "l.csv", b"a" * 25 + b"\n" + b"b" * 5)
    reader = BlobRangeReader(store, folder, probe=8)

    assert await reader.find_newline("l.csv", 0, 1 << 20) == 25
    assert await reader.find_newline("l.csv", 25, 1 << 20) == 25
    assert await reader.find_newline("l.csv", 26, 1 << 20) is None
    assert await reader.find_newline("l.csv", 0, 25) is None, "no line end within the limit"


async def test_code_folder_upload_and_sas_urls(store: BlobStore, tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "score.py").write_text("def run(b):\n    return b\n")
    (tmp_path / "pkg" / "helper.py").write_text("X = 1\n")
    folder = BlobFolder("code", "upload/")

    assert await store.upload_directory(tmp_path, folder) == 2

    assert [b.name async for b in store.list_folder(folder)] == ["pkg/helper.py", "score.py"]
    sign = store.signer(datetime.now(UTC) + timedelta(minutes=5))
    url = sign.url(folder, "pkg/helper.py")
    assert await asyncio.to_thread(fetch, url) == b"X = 1\n"
    # A blob token reads that blob only, and only reads: Azurite refuses another blob and a write (403).
    other = url.replace("pkg/helper.py", "score.py")
    with pytest.raises(HTTPError) as refused:
        await asyncio.to_thread(fetch, other)
    assert refused.value.code == 403
    with pytest.raises(HTTPError) as refused:
        await asyncio.to_thread(put, url, b"X = 2\n")
    assert refused.value.code == 403
    # Read + write on a result blob: written, read back.
    result = sign.url(folder, "0.summary.json", READ_WRITE)
    await asyncio.to_thread(put, result, b"{}")
    assert await asyncio.to_thread(fetch, result) == b"{}"


def put(url: str, data: bytes) -> None:
    headers = {"x-ms-blob-type": "BlockBlob", "x-ms-version": "2021-08-06"}
    with urlopen(Request(url, data=data, headers=headers, method="PUT")):
        return


def fetch(url: str) -> bytes:
    with urlopen(url) as response:  # a plain HTTP client, as the node driver is one: the SAS alone grants access
        data: bytes = response.read()
        return data
