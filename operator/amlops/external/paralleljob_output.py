"""ParallelJob results: the drivers' per-mini-batch outputs → ``parallel_run_step.txt`` and counts.

Each driver writes ``<results>/<index>.txt`` (rows, with ``append_row_to``) and then
``<results>/<index>.summary.json``. Aggregation reads them in mini-batch order, a bounded window at a time, and
builds the output as a block blob: blocks are staged (a retry restages the same ids harmlessly) and committed
with ``If-None-Match: *``, so the file appears exactly once, whole, however often aggregation is repeated
after a crash. Only the rows of mini-batches whose final summary reports no error are included.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from amlops.azure.blob import BlobFolder, BlobStore, block_id

T = TypeVar("T")

OUTPUT_FILE = "parallel_run_step.txt"
BLOCK_TARGET = 4 << 20  # stage a block once this many bytes of rows are buffered (≤ 50,000 blocks a blob)
READ_WINDOW = 16  # summaries / row files read ahead concurrently


@dataclass(frozen=True, slots=True)
class Summary:
    """``<index>.summary.json`` as the driver writes it."""

    index: int
    items: int
    processed: int
    failed: int
    attempt: int
    error: dict[str, Any] | None

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Summary:
        return cls(
            index=int(doc["index"]),
            items=int(doc.get("items", 0)),
            processed=int(doc.get("processed", 0)),
            failed=int(doc.get("failed", 0)),
            attempt=int(doc.get("attempt", 1)),
            error=doc.get("error"),
        )


@dataclass(frozen=True)
class Totals:
    mini_batches: int
    processed_items: int = 0
    failed_items: int = 0
    failed_mini_batches: tuple[int, ...] = ()  # run() raised or timed out on its last attempt
    missing_mini_batches: tuple[int, ...] = ()  # no summary at all (never ran, or killed before writing one)
    output_written: bool = False  # this call created parallel_run_step.txt
    attempts: dict[int, int] = field(default_factory=dict)  # index → attempts, for those retried

    @property
    def failed_indexes(self) -> str:
        """Failed and missing mini-batches as a compressed range string (Indexed Job style)."""
        return compress_ranges(sorted({*self.failed_mini_batches, *self.missing_mini_batches}))


def compress_ranges(indexes: Iterable[int]) -> str:
    """``[3, 7, 8, 9]`` → ``"3,7-9"`` (sorted input; duplicates are ignored)."""
    parts: list[str] = []
    first = last = None
    for index in indexes:
        if last is not None and index <= last:
            continue
        if first is not None and last is not None and index == last + 1:
            last = index
            continue
        if first is not None:
            parts.append(str(first) if first == last else f"{first}-{last}")
        first = last = index
    if first is not None:
        parts.append(str(first) if first == last else f"{first}-{last}")
    return ",".join(parts)


async def read_summary(store: BlobStore, results: BlobFolder, index: int) -> Summary | None:
    data = await store.read(results, f"{index}.summary.json")
    return None if data is None else Summary.from_json(json.loads(data))


async def summarise(store: BlobStore, results: BlobFolder, count: int) -> Totals:
    """Counts from every summary, without touching the row files."""
    return await _walk(store, results, count, None, None)


async def aggregate(
    store: BlobStore, results: BlobFolder, output: BlobFolder, count: int, *, file_name: str = OUTPUT_FILE
) -> Totals:
    """Counts, and ``<output>/parallel_run_step.txt`` built exactly once from the rows in mini-batch order."""
    if await store.exists(output, file_name):
        return await summarise(store, results, count)  # an earlier call committed it
    return await _walk(store, results, count, output, file_name)


async def _walk(
    store: BlobStore, results: BlobFolder, count: int, output: BlobFolder | None, file_name: str | None
) -> Totals:
    processed = failed_items = 0
    failed: list[int] = []
    missing: list[int] = []
    attempts: dict[int, int] = {}
    blocks: list[str] = []
    buffer = bytearray()

    async def fetch(index: int) -> tuple[Summary | None, bytes]:
        summary = await read_summary(store, results, index)
        rows = b""
        if output is not None and summary is not None and summary.error is None:
            rows = await store.read(results, f"{index}.txt") or b""
        return summary, rows

    async def flush() -> None:
        if output is not None and file_name is not None and buffer:
            blocks.append(block_id(len(blocks)))
            await store.stage_block(output, file_name, blocks[-1], bytes(buffer))
            buffer.clear()

    async for index, (summary, rows) in ordered(range(count), fetch, READ_WINDOW):
        if summary is None:
            missing.append(index)
            continue
        processed += summary.processed
        failed_items += summary.failed
        if summary.attempt > 1:
            attempts[index] = summary.attempt
        if summary.error is not None:
            failed.append(index)
        buffer += rows
        if len(buffer) >= BLOCK_TARGET:
            await flush()
    await flush()
    written = False
    if output is not None and file_name is not None:
        written = await store.commit_blocks_if_absent(output, file_name, blocks)
    return Totals(count, processed, failed_items, tuple(failed), tuple(missing), written, attempts)


async def ordered(
    keys: Iterable[int], fetch: Callable[[int], Awaitable[T]], window: int
) -> AsyncIterator[tuple[int, T]]:
    """``fetch`` over ``keys`` with at most ``window`` calls in flight, results yielded in key order."""
    pending: list[tuple[int, asyncio.Task[T]]] = []
    keys_left = iter(keys)
    try:
        for key in keys_left:
            pending.append((key, asyncio.ensure_future(fetch(key))))
            if len(pending) >= window:
                first_key, first = pending.pop(0)
                yield first_key, await first
        for key, task in pending:
            yield key, await task
        pending.clear()
    finally:
        for _, task in pending:
            task.cancel()
