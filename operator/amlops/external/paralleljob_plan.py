"""ParallelJob planning: an input listing → mini-batches, streamed, and the manifest that lets a restart resume.

Pure: no I/O of its own. The listing arrives as an (async) iterator; the few reads planning needs (where the
next line starts in a tabular file) go through the :class:`RangeReader` port; the manifest is written through
the :class:`ManifestStore` port. ``amlops.azure.blob`` implements both over Blob storage.

Memory stays bounded by the mini-batch size: a mini-batch is yielded as soon as it is full, and only the open
one is held (with ``partition_keys``, one open mini-batch per key group).

Deliberate differences from Azure ML ``parallel_run_function``:

As Azure ML ``parallel_run_function`` (azure-ai-ml 1.35 docstring): ``mini_batch_size`` absent is 10 files for
file input and 1 MB for tabular input (:data:`DEFAULT_MINI_BATCH_SIZE`); with ``partition_keys`` it is ignored
("the partition keys will take effect"): each key group is one mini-batch, whatever its size.

Deliberate differences from Azure ML ``parallel_run_function``:

- ``mini_batch_size`` units (``KB``, ``MB``, ``GB``) are binary (1 KB = 1024 bytes); a bare number is bytes
  for tabular inputs and a file count for file inputs.
- A mini-batch lists at most ``MAX_MINI_BATCH_PARTS`` files or row ranges: a larger file count is refused, and a
  tabular mini-batch is cut there even below ``mini_batch_size`` bytes (so the operator's memory stays bounded).
  A ``partition_keys`` group that would list more is refused (``PartitionTooLarge``), never cut: Azure ML makes
  it one mini-batch.
- Tabular ``partition_keys`` are column names (CSV header, JSON Lines keys). Planning reads every row once to
  learn its key values; a mini-batch lists the byte ranges of its rows, adjacent rows merged into one range,
  so key-clustered data (the usual case) needs few ranges.
"""

from __future__ import annotations

import asyncio
import codecs
import csv
import hashlib
import json
import re
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, Protocol, TypeVar

from amlops.reconcile.errors import TerminalError

Kind = Literal["files", "tabular"]
TabularFormat = Literal["csv", "jsonl"]
JsonDoc = dict[str, Any]

INVALID_SPEC = "InvalidSpec"
INVALID_INPUT = "InvalidInput"
INPUT_CHANGED = "InputChanged"
PLAN_CHANGED = "PlanChanged"
PLAN_BLOB_MISSING = "PlanBlobMissing"
LINE_TOO_LONG = "LineTooLong"
TOO_MANY_PARTITIONS = "TooManyPartitions"
INPUT_NOT_UTF8 = "InputNotUtf8"
PARTITION_TOO_LARGE = "PartitionTooLarge"

# Bounds on what tenant data may make the shared operator hold or scan (README, ParallelJob: Bounds).
# A tabular line: partitioning holds one line in memory; cutting looks this far for the next line end.
MAX_LINE_BYTES = 16 << 20
# partitionKeys groups open at once: each holds its open mini-batch in memory while planning.
MAX_OPEN_PARTITIONS = 10_000
# Files, or row ranges, in one mini-batch: a manifest chunk (DEFAULT_CHUNK mini-batches) is held in memory and
# stored as one document. A file count above it is refused; a tabular mini-batch is cut when it holds this many
# ranges (rows of many files, or interleaved partition rows), even below miniBatchSize bytes.
MAX_MINI_BATCH_PARTS = 1_000

MANIFEST_VERSION = 2
INDEX_NAME = "index.json"
# Mini-batches per manifest document, and an index checkpoint after each: 100,000 mini-batches are 200
# uploads, and a restart redoes at most one chunk.
DEFAULT_CHUNK = 500

# The seed's defaults when mini_batch_size is absent (azure-ai-ml parallel_run_function: "10 files for
# FileDataset and 1MB for TabularDataset").
DEFAULT_MINI_BATCH_SIZE: dict[Kind, str] = {"files": "10", "tabular": "1MB"}
_UNITS = {"": 1, "B": 1, "KB": 1 << 10, "K": 1 << 10, "MB": 1 << 20, "M": 1 << 20, "GB": 1 << 30, "G": 1 << 30}
_SIZE = re.compile(r"^\s*(\d+)\s*([A-Za-z]*)\s*$")
_FORMATS: dict[str, TabularFormat] = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}
# Files an MLTable folder carries beside its data; never data themselves.
_TABULAR_IGNORED = ("MLTable",)


# ----------------------------------------------------------------------------------------------- data


@dataclass(frozen=True, slots=True)
class InputItem:
    """One blob of the input folder; ``name`` is relative to that folder."""

    name: str
    size: int
    etag: str


@dataclass(frozen=True, slots=True)
class ByteRange:
    """Whole lines ``[start, end)`` of a tabular file; for CSV, ``[0, header_end)`` is the header line."""

    name: str
    start: int
    end: int
    format: TabularFormat
    header_end: int = 0

    def to_json(self) -> JsonDoc:
        return {
            "name": self.name,
            "start": self.start,
            "end": self.end,
            "format": self.format,
            "headerEnd": self.header_end,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> ByteRange:
        return cls(doc["name"], int(doc["start"]), int(doc["end"]), doc["format"], int(doc.get("headerEnd", 0)))


@dataclass(frozen=True, slots=True)
class MiniBatch:
    index: int
    kind: Kind
    files: tuple[str, ...] = ()
    ranges: tuple[ByteRange, ...] = ()
    partition: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> JsonDoc:
        """The manifest document the node driver reads (``runtime/driver.py`` parses exactly this)."""
        doc: JsonDoc = {"version": MANIFEST_VERSION, "index": self.index, "kind": self.kind}
        if self.kind == "files":
            doc["files"] = list(self.files)
        else:
            doc["ranges"] = [r.to_json() for r in self.ranges]
        if self.partition:
            doc["partition"] = dict(self.partition)
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> MiniBatch:
        return cls(
            index=int(doc["index"]),
            kind=doc["kind"],
            files=tuple(doc.get("files", ())),
            ranges=tuple(ByteRange.from_json(r) for r in doc.get("ranges", ())),
            partition=tuple(dict(doc.get("partition", {})).items()),
        )


@dataclass(frozen=True)
class PlanSpec:
    """The spec fields planning depends on. ``fingerprint`` adds what else makes two runs the same run for
    ``isDeterministic`` reuse (code, entry script, program arguments, ...): it only feeds the hash."""

    kind: Kind
    mini_batch_size: str | None  # None: the seed's default for the kind
    partition_keys: tuple[str, ...] = ()
    fingerprint: Mapping[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> str:
        """``mini_batch_size`` as given, or the seed's default for this kind of input."""
        return DEFAULT_MINI_BATCH_SIZE[self.kind] if self.mini_batch_size is None else self.mini_batch_size

    def limit(self) -> int | None:
        """Files or bytes per mini-batch; None with ``partition_keys`` (a key group is one mini-batch). The size
        is checked either way: a spec it refuses is refused with or without partition keys."""
        limit = parse_mini_batch_size(self.size, self.kind)
        return None if self.partition_keys else limit


@dataclass(frozen=True)
class PlanIndex:
    """``index.json``: how far the manifest got. ``checkpoint`` is the input hash when mini-batch ``count - 1``
    was planned; a resumed plan must reach the same value there, or the input changed under it."""

    count: int
    done: bool
    spec_hash: str
    checkpoint: str
    hash: str | None = None  # of spec + full listing, once done
    chunk: int = DEFAULT_CHUNK  # mini-batches per chunk document

    def to_json(self) -> JsonDoc:
        return {
            "version": MANIFEST_VERSION,
            "count": self.count,
            "done": self.done,
            "specHash": self.spec_hash,
            "checkpoint": self.checkpoint,
            "hash": self.hash,
            "chunk": self.chunk,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> PlanIndex:
        return cls(
            count=int(doc["count"]),
            done=bool(doc["done"]),
            spec_hash=str(doc["specHash"]),
            checkpoint=str(doc["checkpoint"]),
            hash=doc.get("hash"),
            chunk=int(doc.get("chunk", DEFAULT_CHUNK)),
        )


# ----------------------------------------------------------------------------------------------- ports


class RangeReader(Protocol):
    async def find_newline(self, name: str, offset: int, limit: int) -> int | None:
        """Position of the first ``\\n`` in ``[offset, offset + limit)`` of blob ``name``, or None when there is
        none there (the blob ends first, or the line goes on: the caller knows the blob's size)."""
        ...

    def chunks(self, name: str) -> AsyncIterator[bytes]:
        """Blob ``name`` from start to end in pieces of bounded size (partitioning tabular rows reads them)."""
        ...

    async def head(self, name: str) -> bytes:
        """The first bytes of blob ``name`` (a read-ahead window's worth, or all of a small blob)."""
        ...


class ManifestStore(Protocol):
    """A folder of JSON documents (the job's ``_amlops/<job>/plan/``)."""

    async def get_json(self, name: str) -> JsonDoc | None: ...

    async def put_json(self, name: str, doc: JsonDoc) -> None: ...


Items = Iterable[InputItem] | AsyncIterable[InputItem]


# ----------------------------------------------------------------------------------------------- pure helpers


def parse_mini_batch_size(value: str, kind: Kind) -> int:
    """Files per mini-batch (``"10"``), or bytes per mini-batch for tabular input (``"10MB"``, ``"512 KB"``)."""
    match = _SIZE.match(value)
    unit = match.group(2).upper() if match else ""
    if match is None or unit not in _UNITS or (kind == "files" and unit):
        expected = "a file count like 10" if kind == "files" else "a size like 1024, 512KB, 10MB or 1GB"
        raise TerminalError(INVALID_SPEC, f"miniBatchSize {value!r} is not {expected}")
    size = int(match.group(1)) * _UNITS[unit]
    if size < 1:
        raise TerminalError(INVALID_SPEC, f"miniBatchSize {value!r} must be at least 1")
    if kind == "files" and size > MAX_MINI_BATCH_PARTS:
        raise TerminalError(
            INVALID_SPEC, f"miniBatchSize {value!r} is more than {MAX_MINI_BATCH_PARTS} files (MAX_MINI_BATCH_PARTS)"
        )
    return size


def chunk_name(number: int) -> str:
    return f"minibatches/chunk-{number:06d}.json"


def mini_batch_name(index: int) -> str:
    """A mini-batch too large to travel inside its task gets a document of its own (written when added)."""
    return f"minibatches/{index}.json"


def manifest_prefix(output_prefix: str, job_id: str) -> str:
    """``<output>/_amlops/<job-id>/plan/`` inside the output container."""
    return f"{_folder(output_prefix)}_amlops/{job_id}/plan/"


def results_prefix(output_prefix: str, job_id: str) -> str:
    """Where drivers write ``<index>.txt`` and ``<index>.summary.json``."""
    return f"{_folder(output_prefix)}_amlops/{job_id}/results/"


def partition_values(name: str, keys: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """The ``key=value`` folder segments of ``name`` for ``keys``, in the order of ``keys``."""
    found: dict[str, str] = {}
    for segment in name.split("/")[:-1]:
        key, sep, value = segment.partition("=")
        if sep and key in keys:
            found.setdefault(key, value)
    missing = [k for k in keys if k not in found]
    if missing:
        raise TerminalError(INVALID_INPUT, f"{name!r} has no folder segment for partition key(s) {missing}")
    return tuple((k, found[k]) for k in keys)


def tabular_format(name: str) -> TabularFormat | None:
    """CSV or JSON Lines by extension; None for files an MLTable folder carries beside the data."""
    base = name.rsplit("/", 1)[-1]
    if base in _TABULAR_IGNORED:
        return None
    suffix = "." + base.rsplit(".", 1)[-1].lower() if "." in base else ""
    if suffix not in _FORMATS:
        raise TerminalError(INVALID_INPUT, f"{name!r} is neither CSV (.csv) nor JSON Lines (.jsonl) tabular input")
    return _FORMATS[suffix]


class PlanHash:
    """sha256 over the spec fields that matter and, in listing order, every input's name and etag."""

    def __init__(self, spec: PlanSpec) -> None:
        relevant = {
            "kind": spec.kind,
            "miniBatchSize": spec.size,
            "partitionKeys": list(spec.partition_keys),
            "fingerprint": spec.fingerprint,
        }
        canonical = json.dumps(relevant, sort_keys=True, separators=(",", ":"), default=str)
        self.spec_hash = hashlib.sha256(canonical.encode()).hexdigest()
        self._digest = hashlib.sha256(self.spec_hash.encode())

    def update(self, item: InputItem) -> None:
        # NUL cannot occur in blob names or etags, so the encoding is unambiguous.
        self._digest.update(f"\0{item.name}\0{item.etag}".encode())

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


# ----------------------------------------------------------------------------------------------- planning


async def plan(
    items: Items, spec: PlanSpec, reader: RangeReader | None = None, digest: PlanHash | None = None
) -> AsyncIterator[MiniBatch]:
    """Mini-batches in a deterministic order for a given listing, each yielded as soon as it is complete."""
    limit = spec.limit()
    digest = digest or PlanHash(spec)
    if spec.kind == "files":
        batches = _plan_files(_hashed(items, digest), limit, spec.partition_keys)
    elif reader is None:
        raise ValueError("tabular planning needs a RangeReader")
    elif spec.partition_keys:
        batches = _plan_tabular_partitioned(_hashed(items, digest), spec.partition_keys, reader)
    else:
        assert limit is not None  # only partition keys lift it
        batches = _plan_tabular(_hashed(items, digest), limit, reader)
    async for batch in batches:
        yield batch


async def _hashed(items: Items, digest: PlanHash) -> AsyncIterator[InputItem]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            digest.update(item)
            yield item
    else:
        for item in items:
            digest.update(item)
            yield item


async def _plan_files(
    items: AsyncIterator[InputItem], limit: int | None, keys: tuple[str, ...]
) -> AsyncIterator[MiniBatch]:
    groups = _Groups[_OpenFiles](limit, _OpenFiles)
    async for item in items:
        if (full := groups.add(partition_values(item.name, keys) if keys else (), item.name)) is not None:
            yield full
    for rest in groups.rest():
        yield rest


async def _plan_tabular(items: AsyncIterator[InputItem], limit: int, reader: RangeReader) -> AsyncIterator[MiniBatch]:
    """Cut files into line-aligned byte ranges and pack them, across files, into mini-batches of ~``limit``
    bytes (a mini-batch may exceed it by the rest of one line)."""
    index = 0
    ranges: list[ByteRange] = []
    room = limit
    async for item in items:
        file_format = tabular_format(item.name)
        if file_format is None or item.size == 0:
            continue
        start = header_end = 0
        await _check_text(reader, item)
        if file_format == "csv":
            newline = await _line_end(reader, item, 0)
            if newline is None:
                continue  # a header and no row
            start = header_end = newline + 1
        while start < item.size:
            newline = await _line_end(reader, item, start + room - 1) if start + room < item.size else None
            end = item.size if newline is None else newline + 1
            ranges.append(ByteRange(item.name, start, end, file_format, header_end))
            room -= end - start
            start = end
            if room <= 0 or len(ranges) >= MAX_MINI_BATCH_PARTS:
                yield MiniBatch(index, "tabular", ranges=tuple(ranges))
                index, ranges, room = index + 1, [], limit
    if ranges:
        yield MiniBatch(index, "tabular", ranges=tuple(ranges))


async def _line_end(reader: RangeReader, item: InputItem, offset: int) -> int | None:
    """The ``\\n`` ending the line at ``offset``, None at the end of the blob; ``LineTooLong`` past the bound."""
    newline = await reader.find_newline(item.name, offset, MAX_LINE_BYTES)
    if newline is None and offset + MAX_LINE_BYTES < item.size:
        raise line_too_long(item.name, offset)
    return newline


async def _check_text(reader: RangeReader, item: InputItem) -> None:
    """The file's beginning must be UTF-8 (a cut character at the end of the sample is fine): a Latin-1 export
    is refused while planning, before anything runs. Later rows are the node's to decode."""
    try:
        codecs.getincrementaldecoder("utf-8")().decode(await reader.head(item.name), final=False)
    except UnicodeDecodeError as e:
        raise TerminalError(INPUT_NOT_UTF8, f"{item.name!r} is not UTF-8 text ({e})") from None


def partition_too_large(group: tuple[tuple[str, str], ...]) -> TerminalError:
    keys = ", ".join(f"{k}={v}" for k, v in group)
    return TerminalError(
        PARTITION_TOO_LARGE,
        f"the partitionKeys group {keys} lists more than {MAX_MINI_BATCH_PARTS} files or row ranges "
        "(MAX_MINI_BATCH_PARTS); with partitionKeys a group is one mini-batch (as on Azure ML): use finer keys",
    )


def line_too_long(name: str, offset: int) -> TerminalError:
    return TerminalError(
        LINE_TOO_LONG,
        f"{name!r} has a line longer than {MAX_LINE_BYTES} bytes (MAX_LINE_BYTES) at byte {offset}: "
        "is it really CSV or JSON Lines?",
    )


async def _plan_tabular_partitioned(
    items: AsyncIterator[InputItem], keys: tuple[str, ...], reader: RangeReader
) -> AsyncIterator[MiniBatch]:
    """Group rows by the values of the ``keys`` columns: one mini-batch per group, in key order (like file
    partitions)."""
    groups = _Groups[_OpenRanges](None, _OpenRanges)
    async for item in items:
        file_format = tabular_format(item.name)
        if file_format is None or item.size == 0:
            continue
        columns: list[str] | None = None
        header_end = 0
        async for start, end, line in _lines(item.name, reader.chunks(item.name)):
            if file_format == "csv" and columns is None:
                columns, header_end = _csv_row(_text(item.name, line, start, "utf-8-sig")), end
                missing = [k for k in keys if k not in columns]
                if missing:
                    raise TerminalError(INVALID_INPUT, f"{item.name!r} has no column(s) {missing} (partitionKeys)")
                continue
            if not line.strip():
                continue
            group = _row_partition(item.name, _text(item.name, line, start), file_format, columns, keys)
            if (full := groups.add(group, ByteRange(item.name, start, end, file_format, header_end))) is not None:
                yield full
    for rest in groups.rest():
        yield rest


Group = tuple[tuple[str, str], ...]


class _Open(Protocol):
    """A mini-batch being filled: ``size`` in the limit's unit (files, or bytes of rows); ``parts`` the files or
    ranges it lists."""

    size: int

    @property
    def parts(self) -> int: ...

    def add(self, part: Any) -> None: ...

    def mini_batch(self, index: int, group: Group) -> MiniBatch: ...


OpenT = TypeVar("OpenT", bound=_Open)


class _Groups(Generic[OpenT]):
    """One open mini-batch per partition group, cut as soon as it reaches ``limit`` (None: never, a group is one
    mini-batch, and one that outgrows ``MAX_MINI_BATCH_PARTS`` is ``PartitionTooLarge``). The ones left at the
    end come out in key order, so replaying the same listing gives every mini-batch the same index (what resuming
    a plan relies on). Memory: one open mini-batch per group."""

    def __init__(self, limit: int | None, fresh: Callable[[], OpenT]) -> None:
        self._limit, self._fresh = limit, fresh
        self._open: dict[Group, OpenT] = {}
        self._index = 0

    def add(self, group: Group, part: Any) -> MiniBatch | None:
        if group not in self._open and len(self._open) >= MAX_OPEN_PARTITIONS:
            raise TerminalError(
                TOO_MANY_PARTITIONS,
                f"the input has more than {MAX_OPEN_PARTITIONS} partitionKeys groups open at once "
                "(MAX_OPEN_PARTITIONS): use fewer or coarser partition keys",
            )
        batch = self._open.setdefault(group, self._fresh())
        batch.add(part)
        if self._limit is None:
            if batch.parts > MAX_MINI_BATCH_PARTS:
                raise partition_too_large(group)
            return None
        if batch.size < self._limit and batch.parts < MAX_MINI_BATCH_PARTS:
            return None
        del self._open[group]
        return self._cut(batch, group)

    def rest(self) -> Iterator[MiniBatch]:
        for group in sorted(self._open):
            yield self._cut(self._open[group], group)
        self._open.clear()

    def _cut(self, batch: OpenT, group: Group) -> MiniBatch:
        self._index += 1
        return batch.mini_batch(self._index - 1, group)


@dataclass
class _OpenFiles:
    files: list[str] = field(default_factory=list)
    size: int = 0

    def add(self, name: str) -> None:
        self.files.append(name)
        self.size += 1

    @property
    def parts(self) -> int:
        return len(self.files)

    def mini_batch(self, index: int, group: Group) -> MiniBatch:
        return MiniBatch(index, "files", tuple(self.files), partition=group)


@dataclass
class _OpenRanges:
    ranges: list[ByteRange] = field(default_factory=list)
    size: int = 0

    def add(self, row: ByteRange) -> None:
        last = self.ranges[-1] if self.ranges else None
        if last is not None and last.name == row.name and last.end == row.start:
            self.ranges[-1] = ByteRange(last.name, last.start, row.end, last.format, last.header_end)
        else:
            self.ranges.append(row)
        self.size += row.end - row.start

    @property
    def parts(self) -> int:
        return len(self.ranges)

    def mini_batch(self, index: int, group: Group) -> MiniBatch:
        return MiniBatch(index, "tabular", ranges=tuple(self.ranges), partition=group)


async def _lines(name: str, chunks: AsyncIterator[bytes]) -> AsyncIterator[tuple[int, int, bytes]]:
    """``(start, end, line)`` of every line; ``end`` is past its ``\\n`` (or the end of a last, unended line).
    Memory: one chunk and one line; a line longer than ``MAX_LINE_BYTES`` is ``LineTooLong``."""
    buffer, offset = b"", 0
    async for chunk in chunks:
        buffer += chunk
        cut = 0
        while (newline := buffer.find(b"\n", cut)) >= 0:
            yield offset + cut, offset + newline + 1, buffer[cut : newline + 1]
            cut = newline + 1
        buffer, offset = buffer[cut:], offset + cut
        if len(buffer) > MAX_LINE_BYTES:
            raise line_too_long(name, offset)
    if buffer:
        yield offset, offset + len(buffer), buffer


def _text(name: str, line: bytes, offset: int, encoding: str = "utf-8") -> str:
    try:
        return line.decode(encoding)
    except UnicodeDecodeError as e:
        raise TerminalError(INPUT_NOT_UTF8, f"{name!r} is not UTF-8 text (the line at byte {offset}: {e})") from None


def _csv_row(text: str) -> list[str]:
    return next(csv.reader([text.rstrip("\r\n")]), [])


def _row_partition(
    name: str, line: str, file_format: TabularFormat, columns: list[str] | None, keys: tuple[str, ...]
) -> tuple[tuple[str, str], ...]:
    if file_format == "csv":
        assert columns is not None
        values = dict(zip(columns, _csv_row(line), strict=False))
        missing = [k for k in keys if k not in values]
    else:
        try:
            row = json.loads(line)
        except ValueError as e:
            raise TerminalError(INVALID_INPUT, f"{name!r} has a line that is not JSON: {e}") from None
        if not isinstance(row, dict):
            raise TerminalError(INVALID_INPUT, f"{name!r} has a JSON line that is not an object")
        values = {k: v if isinstance(v, str) else json.dumps(v) for k, v in row.items() if k in keys}
        missing = [k for k in keys if k not in values]
    if missing:
        raise TerminalError(INVALID_INPUT, f"{name!r} has a row without partition key(s) {missing}")
    return tuple((k, values[k]) for k in keys)


# ----------------------------------------------------------------------------------------------- manifest


async def read_index(store: ManifestStore) -> PlanIndex | None:
    doc = await store.get_json(INDEX_NAME)
    return None if doc is None else _parsed(INDEX_NAME, lambda: PlanIndex.from_json(doc))


T = TypeVar("T")


def _parsed(name: str, parse: Callable[[], T]) -> T:
    """A plan document that is not what amlops wrote (edited by hand): Stalled, naming it."""
    try:
        return parse()
    except (KeyError, ValueError, TypeError) as e:
        raise TerminalError(
            PLAN_CHANGED, f"the job's plan document {name} is damaged ({e!r}): delete and recreate the ParallelJob"
        ) from None


async def read_chunk(store: ManifestStore, number: int) -> list[MiniBatch]:
    """The mini-batches of manifest chunk ``number``: indexes ``[number * chunk, (number + 1) * chunk)``."""
    doc = await store.get_json(chunk_name(number))
    if doc is None:
        raise plan_blob_missing(chunk_name(number))
    return _parsed(chunk_name(number), lambda: [MiniBatch.from_json(d) for d in doc["miniBatches"]])


def plan_blob_missing(name: str) -> TerminalError:
    """A plan document of a job that already runs is gone (deleted by hand, or a lifecycle rule)."""
    return TerminalError(
        PLAN_BLOB_MISSING,
        f"the job's plan document {name} disappeared from the output folder's _amlops/ area: its mini-batches can "
        "no longer be added; delete and recreate the ParallelJob",
    )


async def write_manifest(
    items: Items,
    spec: PlanSpec,
    store: ManifestStore,
    reader: RangeReader | None = None,
    *,
    chunk: int = DEFAULT_CHUNK,
    progress: Callable[[PlanIndex], None] | None = None,
) -> PlanIndex:
    """Plan every mini-batch into chunk documents of ``chunk`` mini-batches, then the final index; resumable.

    A chunk is written once full, then the index checkpoint after it, so memory holds one chunk and a
    restart redoes at most one chunk. A complete index is returned as is (nothing is listed). An incomplete
    one is continued: planning is deterministic for a given listing, so the plan is replayed, full chunks
    already written are skipped, and the input hash at the last checkpoint must match (else ``InputChanged``:
    the listing changed under a plan whose first mini-batches may already run).

    ``progress`` is told every index written (and a complete one found), so the mini-batches it counts can be used
    (their tasks added) while the rest is planned: each is in a chunk document already. A resumed plan tells
    nothing before its next checkpoint: what it resumes from is trusted once the replay has checked the input.
    """
    tell = progress or (lambda _: None)
    previous = await read_index(store)
    if previous is not None and previous.done:
        tell(previous)
        return previous
    digest = PlanHash(spec)
    if previous is not None and (previous.spec_hash != digest.spec_hash or previous.chunk != chunk):
        raise TerminalError(PLAN_CHANGED, "the job's planning fields changed after planning started")
    resume_at = previous.count if previous is not None else 0
    count = 0
    docs: list[JsonDoc] = []
    async for batch in plan(items, spec, reader, digest):
        count = batch.index + 1
        if batch.index < resume_at:
            if count == resume_at and previous is not None and digest.hexdigest() != previous.checkpoint:
                raise TerminalError(INPUT_CHANGED, "the input folder changed while the job was being planned")
            continue
        docs.append(batch.to_json())
        if count % chunk == 0:
            await _write_chunk(store, count // chunk - 1, docs)
            docs = []
            checkpoint = PlanIndex(count, False, digest.spec_hash, digest.hexdigest(), chunk=chunk)
            await store.put_json(INDEX_NAME, checkpoint.to_json())
            tell(checkpoint)
    if count < resume_at:
        raise TerminalError(INPUT_CHANGED, "the input folder shrank while the job was being planned")
    if docs:
        await _write_chunk(store, (count - 1) // chunk, docs)
    final = PlanIndex(count, True, digest.spec_hash, digest.hexdigest(), digest.hexdigest(), chunk)
    await store.put_json(INDEX_NAME, final.to_json())
    tell(final)
    return final


class PlanProgress:
    """How far a plan has been written (its last index), for :func:`write_manifest`'s ``progress``: what uses its
    mini-batches while it is being planned waits here for them."""

    def __init__(self, index: PlanIndex | None = None) -> None:
        self.count, self.done = (index.count, index.done) if index else (0, False)
        self.chunk = index.chunk if index else DEFAULT_CHUNK
        self._moved = asyncio.Event()

    def __call__(self, index: PlanIndex) -> None:
        self.count, self.done, self.chunk = index.count, index.done, index.chunk
        self._moved.set()

    async def reached(self, count: int) -> int:
        """How many mini-batches are planned, once at least ``count`` are or the plan is done (then maybe fewer)."""
        while self.count < count and not self.done:
            self._moved.clear()
            await self._moved.wait()
        return self.count


async def _write_chunk(store: ManifestStore, number: int, docs: list[JsonDoc]) -> None:
    await store.put_json(chunk_name(number), {"version": MANIFEST_VERSION, "miniBatches": docs})


def _folder(prefix: str) -> str:
    prefix = prefix.strip("/")
    return f"{prefix}/" if prefix else ""
