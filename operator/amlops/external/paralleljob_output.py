"""ParallelJob results: the drivers' per-mini-batch outputs → ``parallel_run_step.txt`` and counts.

Each driver writes ``<results>/<index>.txt`` (rows, with ``append_row_to``) and then
``<results>/<index>.summary.json``. Aggregation reads the summaries in mini-batch order, a bounded window at a
time, and streams the row files one after another in ranged reads (never a whole row file in memory), building
the output as a block blob: blocks are staged (a retry restages the same ids harmlessly) and committed
conditionally, so the file appears exactly once, whole, however often aggregation is repeated after a crash.
Only the rows of mini-batches whose final summary reports no error are included (a mini-batch whose ``run()``
returned fewer results than items is a failed mini-batch, yet its rows are kept: what it returned succeeded).

Runs may share an output folder. The output carries the writing job in its metadata (``amlopsjob``): a job
counts only a file it wrote as its output, and replaces an earlier run's file exactly once (``If-Match`` on
the version it saw), never reporting that run's rows as its own.

Summaries are written by user code's process: one that is not JSON, not the expected shape, or larger than
``MAX_SUMMARY_BYTES`` makes its mini-batch count as failed with a message saying so, never a failing pass.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from amlops.azure.blob import BlobFolder, BlobStore, block_id
from amlops.reconcile.errors import RetryableError

T = TypeVar("T")

OUTPUT_FILE = "parallel_run_step.txt"
BLOCK_TARGET = 4 << 20  # stage a block once this many bytes of rows are buffered (≤ 50,000 blocks a blob)
READ_WINDOW = 16  # summaries read ahead concurrently
ROW_CHUNK = 4 << 20  # bytes of a row file read at once
# A summary is a few hundred bytes; anything much larger is not one the driver wrote.
MAX_SUMMARY_BYTES = 64 << 10
WRITER_METADATA = "amlopsjob"  # blob metadata naming the job that wrote parallel_run_step.txt
INVALID_SUMMARY = "InvalidSummary"


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
    # run() raised or timed out on its last attempt, or returned fewer results than items (Azure ML: "marked as
    # failed"; its rows are still in the output)
    failed_mini_batches: tuple[int, ...] = ()
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


def parse_summary(data: bytes, index: int) -> Summary:
    """A summary's bytes → :class:`Summary`; one that is not what the driver writes → a failed mini-batch whose
    error says why (user code shares the results folder and may have overwritten it)."""
    try:
        doc = json.loads(data)
        summary = Summary.from_json(doc) if isinstance(doc, dict) else None
        if summary is not None and isinstance(summary.error, dict | None) and summary.index == index:
            return summary
        problem = "not the summary the driver writes"
    except (ValueError, TypeError, KeyError, RecursionError) as e:  # JSON, or a field of the wrong type
        problem = f"not valid: {str(e)[:200]}"
    message = f"{index}.summary.json is {problem}; the mini-batch counts as failed"
    return Summary(index, 0, 0, 0, 1, {"type": INVALID_SUMMARY, "message": message})


async def read_summary(store: BlobStore, results: BlobFolder, index: int) -> Summary | None:
    data = await store.read(results, f"{index}.summary.json", 0, MAX_SUMMARY_BYTES + 1)
    if data is None:
        return None
    if len(data) > MAX_SUMMARY_BYTES:
        data = b"larger than MAX_SUMMARY_BYTES"  # never parsed whole: reported as an invalid summary
    return parse_summary(data, index)


def writer_id(results: BlobFolder) -> str:
    """Who writes an output: the job, known by its own results folder (``_amlops/<job-id>/results/``)."""
    return hashlib.sha256(f"{results.container}/{results.prefix}".encode()).hexdigest()[:32]


async def output_written(
    store: BlobStore, results: BlobFolder, output: BlobFolder, file_name: str = OUTPUT_FILE
) -> bool:
    """Whether ``parallel_run_step.txt`` is there and this job (``results``) wrote it."""
    found = await store.properties(output, file_name)
    return found is not None and found[1].get(WRITER_METADATA) == writer_id(results)


async def summarise(store: BlobStore, results: BlobFolder, count: int) -> Totals:
    """Counts from every summary, without touching the row files."""
    return await _walk(store, results, count, None)


async def aggregate(
    store: BlobStore, results: BlobFolder, output: BlobFolder, count: int, *, file_name: str = OUTPUT_FILE
) -> Totals:
    """Counts, and ``<output>/parallel_run_step.txt`` built exactly once from the rows in mini-batch order: a file
    this job wrote is kept; another run's is replaced, only in the version seen (a changed one: try again)."""
    found = await store.properties(output, file_name)
    if found is not None and found[1].get(WRITER_METADATA) == writer_id(results):
        return await summarise(store, results, count)  # an earlier call committed it
    writer = _Writer(store, output, file_name, writer_id(results))
    totals = await _walk(store, results, count, writer)
    if await writer.commit(found[0] if found else None):
        return replace(totals, output_written=True)
    if await output_written(store, results, output, file_name):
        return totals  # a concurrent call of this job committed it first
    raise RetryableError("OutputChanged", f"{output.blob(file_name)} changed while this job wrote it: writing again")


class _Writer:
    """Row bytes → staged blocks of about ``BLOCK_TARGET`` bytes, then one conditional commit."""

    def __init__(self, store: BlobStore, output: BlobFolder, file_name: str, writer: str) -> None:
        self.store, self.output, self.file_name, self.writer = store, output, file_name, writer
        self.blocks: list[str] = []
        self.buffer = bytearray()

    async def add(self, rows: bytes) -> None:
        self.buffer += rows
        if len(self.buffer) >= BLOCK_TARGET:
            await self.flush()

    async def flush(self) -> None:
        if self.buffer:
            self.blocks.append(block_id(len(self.blocks), self.writer))
            await self.store.stage_block(self.output, self.file_name, self.blocks[-1], bytes(self.buffer))
            self.buffer.clear()

    async def commit(self, replacing: str | None) -> bool:
        await self.flush()
        return await self.store.commit_blocks(
            self.output, self.file_name, self.blocks, metadata={WRITER_METADATA: self.writer}, replacing=replacing
        )


async def _walk(store: BlobStore, results: BlobFolder, count: int, writer: _Writer | None) -> Totals:
    processed = failed_items = 0
    failed: list[int] = []
    missing: list[int] = []
    attempts: dict[int, int] = {}

    async def fetch(index: int) -> Summary | None:
        return await read_summary(store, results, index)

    async for index, summary in ordered(range(count), fetch, READ_WINDOW):
        if summary is None:
            missing.append(index)
            continue
        processed += summary.processed
        failed_items += summary.failed
        if summary.attempt > 1:
            attempts[index] = summary.attempt
        if summary.error is not None or summary.failed > 0:
            failed.append(index)
        if summary.error is None and writer is not None:
            async for rows in store.chunks(results, f"{index}.txt", ROW_CHUNK):
                await writer.add(rows)
    return Totals(count, processed, failed_items, tuple(failed), tuple(missing), False, attempts)


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
