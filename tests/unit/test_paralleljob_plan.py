"""ParallelJob planning without I/O: sizes, partition keys, line-aligned ranges, hashing, streaming, manifest."""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from amlops.external.paralleljob_output import compress_ranges
from amlops.external.paralleljob_plan import (
    INDEX_NAME,
    MAX_MINI_BATCH_PARTS,
    ByteRange,
    InputItem,
    Kind,
    MiniBatch,
    PlanHash,
    PlanIndex,
    PlanProgress,
    PlanSpec,
    chunk_name,
    parse_mini_batch_size,
    plan,
    read_chunk,
    read_index,
    write_manifest,
)
from amlops.reconcile.errors import TerminalError

pytestmark = pytest.mark.unit


@dataclass(frozen=True)
class SizeCase:
    reason: str
    value: str
    kind: str
    expected: int | None  # None: rejected as InvalidSpec


SIZE_CASES = [
    SizeCase("a file count is a plain number", "10", "files", 10),
    SizeCase("a bare tabular size is bytes", "100", "tabular", 100),
    SizeCase("units are binary", "512KB", "tabular", 512 * 1024),
    SizeCase("spaces and case do not matter", "10 mb", "tabular", 10 << 20),
    SizeCase("gigabytes", "1GB", "tabular", 1 << 30),
    SizeCase("a size is no file count", "10MB", "files", None),
    SizeCase("zero makes no progress", "0", "files", None),
    SizeCase("negative numbers are not sizes", "-1", "tabular", None),
    SizeCase("unknown unit", "3TB", "tabular", None),
    SizeCase("not a number", "ten", "files", None),
    SizeCase("the most files a mini-batch may list", "1000", "files", 1000),
    SizeCase("more files than a mini-batch may list (MAX_MINI_BATCH_PARTS)", "1001", "files", None),
    SizeCase("a tabular size is bytes, not parts: no such bound", "100000", "tabular", 100000),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.reason) for c in SIZE_CASES])
def test_parse_mini_batch_size(case: SizeCase) -> None:
    kind: Any = case.kind
    if case.expected is None:
        with pytest.raises(TerminalError) as caught:
            parse_mini_batch_size(case.value, kind)
        assert caught.value.reason == "InvalidSpec", case.reason
    else:
        assert parse_mini_batch_size(case.value, kind) == case.expected, case.reason


def files(*names: str) -> list[InputItem]:
    return [InputItem(name, 10, f"etag-{name}") for name in names]


async def collect(batches: AsyncIterator[MiniBatch]) -> list[MiniBatch]:
    return [batch async for batch in batches]


async def test_files_are_cut_in_listing_order() -> None:
    names = [f"f{i:02d}.txt" for i in range(25)]

    batches = await collect(plan(files(*names), PlanSpec("files", "10")))

    assert [b.index for b in batches] == [0, 1, 2]
    assert [len(b.files) for b in batches] == [10, 10, 5]
    assert [f for b in batches for f in b.files] == names


async def test_an_async_listing_plans_like_a_sync_one() -> None:
    items = files(*(f"f{i}" for i in range(7)))

    async def listing() -> AsyncIterator[InputItem]:
        for item in items:
            yield item

    assert await collect(plan(listing(), PlanSpec("files", "3"))) == await collect(plan(items, PlanSpec("files", "3")))


async def test_partition_keys_never_mix_key_values_and_keep_each_group_together() -> None:
    names = [
        f"data/region={region}/day={day}/part-{i}.csv"
        for i in range(3)
        for region in ("eu", "us")
        for day in ("1", "2")
    ]

    batches = await collect(plan(files(*names), PlanSpec("files", "2", partition_keys=("region", "day"))))

    groups: dict[tuple[tuple[str, str], ...], list[str]] = {}
    for batch in batches:
        for name in batch.files:
            assert f"region={dict(batch.partition)['region']}/day={dict(batch.partition)['day']}/" in name
        groups.setdefault(batch.partition, []).extend(batch.files)
    assert sorted(n for names_ in groups.values() for n in names_) == sorted(names)
    assert len(groups) == 4
    assert [b.index for b in batches] == list(range(len(batches)))
    # 3 files per group and miniBatchSize 2: partition keys take precedence ("If both partition_keys and
    # mini_batch_size are specified, the partition keys will take effect", azure-ai-ml parallel_run_function),
    # so each group is one mini-batch of 3.
    assert [len(b.files) for b in batches] == [3, 3, 3, 3]


async def test_a_partition_group_too_large_for_one_mini_batch_is_refused_not_cut() -> None:
    names = [f"region=eu/{i}.txt" for i in range(MAX_MINI_BATCH_PARTS + 1)]
    with pytest.raises(TerminalError) as caught:
        await collect(plan(files(*names), PlanSpec("files", "10", partition_keys=("region",))))
    assert caught.value.reason == "PartitionTooLarge"
    assert "region=eu" in caught.value.message


@pytest.mark.parametrize(
    ("kind", "size", "items", "expected", "reason"),
    [
        ("files", None, 25, [10, 10, 5], "absent: 10 files per mini-batch (the seed's default for file input)"),
        ("files", "4", 9, [4, 4, 1], "given: as given"),
    ],
)
async def test_default_mini_batch_size(
    kind: Kind, size: str | None, items: int, expected: list[int], reason: str
) -> None:
    spec = PlanSpec(kind, size)
    batches = await collect(plan(files(*(f"{i:03d}.txt" for i in range(items))), spec))
    assert [len(b.files) for b in batches] == expected, reason


def test_default_tabular_size() -> None:
    """azure-ai-ml parallel_run_function: mini_batch_size "10 files for FileDataset and 1MB for TabularDataset"."""
    assert PlanSpec("tabular", None).limit() == 1 << 20
    assert PlanSpec("files", None).limit() == 10
    assert PlanSpec("files", None, ("region",)).limit() is None
    assert PlanSpec("files", None).size == "10"
    # Absent and the default spelled out are one plan (isDeterministic reuse, resuming a plan).
    assert PlanHash(PlanSpec("tabular", None)).spec_hash == PlanHash(PlanSpec("tabular", "1MB")).spec_hash


async def test_a_file_without_a_partition_key_is_invalid_input() -> None:
    with pytest.raises(TerminalError) as caught:
        await collect(plan(files("region=eu/a.csv", "b.csv"), PlanSpec("files", "5", partition_keys=("region",))))
    assert caught.value.reason == "InvalidInput"


class MemoryReader:
    """The RangeReader port over in-memory files, counting the bytes it was asked to look at."""

    def __init__(self, blobs: dict[str, bytes]) -> None:
        self.blobs = blobs
        self.calls = 0

    async def find_newline(self, name: str, offset: int, limit: int) -> int | None:
        self.calls += 1
        found = self.blobs[name].find(b"\n", offset, offset + limit)
        return None if found < 0 else found

    def items(self) -> list[InputItem]:
        return [InputItem(name, len(data), f"e-{name}") for name, data in self.blobs.items()]

    async def head(self, name: str) -> bytes:
        self.calls += 1
        return self.blobs[name][:64]

    async def chunks(self, name: str) -> AsyncIterator[bytes]:
        # Tiny pieces, so lines straddle chunk boundaries.
        data = self.blobs[name]
        for start in range(0, len(data), 7):
            self.calls += 1
            yield data[start : start + 7]


def csv_file(rows: int, width: int = 20) -> bytes:
    return b"id,value\n" + b"".join(f"{i},{'x' * (width - len(str(i)))}\n".encode() for i in range(rows))


def rows_of(reader: MemoryReader, ranges: list[ByteRange]) -> list[bytes]:
    return [line for r in ranges for line in reader.blobs[r.name][r.start : r.end].splitlines(keepends=True)]


async def test_tabular_ranges_are_line_aligned_cover_every_row_once_and_keep_the_header() -> None:
    reader = MemoryReader({"a.csv": csv_file(100), "b.csv": csv_file(7)})

    batches = await collect(plan(reader.items(), PlanSpec("tabular", "300"), reader))

    ranges = [r for b in batches for r in b.ranges]
    for r in ranges:
        data = reader.blobs[r.name]
        assert r.header_end == len(b"id,value\n")
        assert data[r.end - 1 : r.end] == b"\n", "a range ends at a line end"
        assert data[r.start - 1 : r.start] == b"\n", "a range starts at a line start"
    expected = [line for data in reader.blobs.values() for line in data.splitlines(keepends=True)[1:]]
    assert rows_of(reader, ranges) == expected
    for batch in batches[:-1]:
        size = sum(r.end - r.start for r in batch.ranges)
        assert 300 <= size < 300 + 22, "a mini-batch overshoots by less than one line"


async def test_small_tabular_files_are_packed_into_one_mini_batch_and_empty_ones_skipped() -> None:
    reader = MemoryReader(
        {
            "part-1.jsonl": b'{"a": 1}\n{"a": 2}\n',
            "part-2.jsonl": b'{"a": 3}',  # no final newline
            "header-only.csv": b"id,value\n",
            "MLTable": b"paths: []\n",
        }
    )

    batches = await collect(plan(reader.items(), PlanSpec("tabular", "1MB"), reader))

    assert len(batches) == 1
    assert [(r.name, r.start, r.end, r.format, r.header_end) for r in batches[0].ranges] == [
        ("part-1.jsonl", 0, 18, "jsonl", 0),
        ("part-2.jsonl", 0, 8, "jsonl", 0),
    ]


async def test_tabular_input_of_another_format_is_invalid() -> None:
    reader = MemoryReader({"data.parquet": b"PAR1"})
    with pytest.raises(TerminalError) as caught:
        await collect(plan(reader.items(), PlanSpec("tabular", "1MB"), reader))
    assert caught.value.reason == "InvalidInput"


async def test_a_long_line_is_kept_whole() -> None:
    reader = MemoryReader({"wide.jsonl": b'{"v": "' + b"x" * 1000 + b'"}\n{"v": 1}\n'})

    batches = await collect(plan(reader.items(), PlanSpec("tabular", "10"), reader))

    assert [[(r.start, r.end) for r in b.ranges] for b in batches] == [[(0, 1010)], [(1010, 1019)]]


def rows_by_partition(reader: MemoryReader, batches: list[MiniBatch]) -> dict[Any, list[bytes]]:
    grouped: dict[Any, list[bytes]] = {}
    for batch in batches:
        grouped.setdefault(batch.partition, []).extend(rows_of(reader, list(batch.ranges)))
    return grouped


async def test_tabular_partition_keys_group_rows_by_column_values() -> None:
    # Interleaved regions in one CSV, clustered days in a second one; the header is not a row.
    rows_a = [f"{i},{'eu' if i % 3 else 'us'},d1,{i * 10}\n".encode() for i in range(30)]
    rows_b = [f"{100 + i},eu,d{1 + i // 10},{i}\n".encode() for i in range(20)]
    reader = MemoryReader(
        {"a.csv": b"id,region,day,v\n" + b"".join(rows_a), "b.csv": b"id,region,day,v\r\n" + b"".join(rows_b)}
    )

    batches = await collect(plan(reader.items(), PlanSpec("tabular", "1MB", ("region", "day")), reader))

    grouped = rows_by_partition(reader, batches)
    assert set(grouped) == {(("region", "eu"), ("day", "d1")), (("region", "us"), ("day", "d1")),
                            (("region", "eu"), ("day", "d2"))}  # fmt: skip
    for key, rows in grouped.items():
        values = dict(key)
        assert rows
        assert all(f",{values['region']},{values['day']},".encode() in row for row in rows)
    every_row = sorted(row for rows in grouped.values() for row in rows)
    assert every_row == sorted(rows_a + rows_b), "every row exactly once"
    # Adjacent rows of a group are one range: b.csv's eu/d2 rows are consecutive.
    eu_d2 = next(b for b in batches if b.partition == (("region", "eu"), ("day", "d2")))
    assert len(eu_d2.ranges) == 1
    assert all(r.header_end == len(reader.blobs[r.name].split(b"\n", 1)[0]) + 1 for b in batches for r in b.ranges)
    assert [b.index for b in batches] == list(range(len(batches)))


async def test_a_tabular_partition_group_is_one_mini_batch_over_the_size_and_json_lines_work() -> None:
    """partition_keys take precedence over mini_batch_size (azure-ai-ml parallel_run_function docstring): a
    group of ~600 bytes with miniBatchSize 100 is still one mini-batch."""
    lines = [f'{{"k": {i % 2}, "v": "{"x" * 10}"}}\n'.encode() for i in range(40)]
    reader = MemoryReader({"part.jsonl": b"".join(lines)})

    batches = await collect(plan(reader.items(), PlanSpec("tabular", "100", ("k",)), reader))

    assert [b.partition for b in batches] == [(("k", "0"),), (("k", "1"),)]
    for batch in batches:
        rows = rows_of(reader, list(batch.ranges))
        assert all(f'"k": {dict(batch.partition)["k"]},'.encode() in row for row in rows)
        assert len(rows) == 20
    assert sorted(r for b in batches for r in rows_of(reader, list(b.ranges))) == sorted(lines)


@pytest.mark.parametrize(
    ("blob", "reason"),
    [
        (b"id,v\n1,2\n", "a CSV without the key column"),
        (b'{"region": "eu"}\n{"v": 1}\n', "a JSON line without the key"),
        (b'{"region": "eu"}\nnot json\n', "a line that is not JSON"),
    ],
)
async def test_tabular_rows_without_the_partition_key_are_invalid_input(blob: bytes, reason: str) -> None:
    name = "data.csv" if blob.startswith(b"id") else "data.jsonl"
    reader = MemoryReader({name: blob})
    with pytest.raises(TerminalError) as caught:
        await collect(plan(reader.items(), PlanSpec("tabular", "1MB", ("region",)), reader))
    assert caught.value.reason == "InvalidInput", reason


def digest_of(items: list[InputItem], spec: PlanSpec) -> str:
    digest = PlanHash(spec)
    for item in items:
        digest.update(item)
    return digest.hexdigest()


def test_the_plan_hash_covers_spec_names_and_etags_only() -> None:
    spec = PlanSpec("files", "10", fingerprint={"entryScript": "score.py"})
    listing = files("a", "b")

    assert digest_of(listing, spec) == digest_of(files("a", "b"), PlanSpec("files", "10", fingerprint=spec.fingerprint))
    assert digest_of(listing, spec) != digest_of([listing[0], InputItem("b", 10, "changed")], spec)
    assert digest_of(listing, spec) != digest_of(files("a", "c"), spec)
    assert digest_of(listing, spec) != digest_of(listing, PlanSpec("files", "5", fingerprint=spec.fingerprint))
    assert digest_of(listing, spec) != digest_of(listing, PlanSpec("files", "10", fingerprint={"entryScript": "x"}))
    # Size is not an identity: a blob's content change shows in its etag.
    assert digest_of(listing, spec) == digest_of([InputItem("a", 99, "etag-a"), listing[1]], spec)


async def test_planning_streams_with_bounded_memory() -> None:
    consumed = 0

    def listing(count: int) -> Iterator[InputItem]:
        nonlocal consumed
        for i in range(count):
            consumed += 1
            yield InputItem(f"inputs/shard-{i:07d}.bin", 1024, f"0x8D{i:012X}")

    batches = plan(listing(100_000), PlanSpec("files", "10"))
    first = await anext(batches)
    assert consumed == 10, "the first mini-batch is yielded as soon as it is full"

    tracemalloc.start()
    try:
        count = 1
        async for batch in batches:
            count += 1
            assert len(batch.files) == 10
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert first.index == 0
    assert count == 10_000
    # Holding the listing would take tens of MB; the planner holds one mini-batch at a time.
    assert peak < 1 << 20, f"peak {peak} bytes"


class MemoryStore:
    """The ManifestStore port as a dict; ``fail_after`` simulates the operator dying mid-plan."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.docs: dict[str, dict[str, Any]] = {}
        self.puts = 0
        self.fail_after = fail_after

    async def get_json(self, name: str) -> dict[str, Any] | None:
        return self.docs.get(name)

    async def put_json(self, name: str, doc: dict[str, Any]) -> None:
        if self.fail_after is not None and self.puts >= self.fail_after:
            raise ConnectionError("operator died")
        self.puts += 1
        self.docs[name] = doc


async def test_manifest_has_every_mini_batch_and_a_done_index() -> None:
    store = MemoryStore()
    listing = files(*(f"f{i}" for i in range(23)))

    index = await write_manifest(listing, PlanSpec("files", "5"), store, chunk=2)

    assert (index.count, index.done) == (5, True)
    assert index.hash == digest_of(listing, PlanSpec("files", "5"))
    assert store.docs[INDEX_NAME]["done"] is True
    # Chunks of 2 mini-batches: 0-1, 2-3, and the last one alone.
    assert sorted(store.docs) == [INDEX_NAME, chunk_name(0), chunk_name(1), chunk_name(2)]
    assert await read_chunk(store, 2) == [MiniBatch(4, "files", ("f20", "f21", "f22"))]
    assert [b.index for b in await read_chunk(store, 1)] == [2, 3]
    assert await read_index(store) == index


async def test_a_restarted_plan_resumes_after_the_last_checkpoint_and_ends_identical() -> None:
    listing = files(*(f"f{i:03d}" for i in range(100)))
    spec = PlanSpec("files", "3")
    clean = MemoryStore()
    await write_manifest(listing, spec, clean, chunk=4)
    crashed = MemoryStore(fail_after=9)  # 34 mini-batches: dies writing the index after the fifth chunk

    with pytest.raises(ConnectionError):
        await write_manifest(listing, spec, crashed, chunk=4)
    checkpoint = await read_index(crashed)
    assert checkpoint is not None
    assert not checkpoint.done
    assert checkpoint.count > 0
    crashed.fail_after, puts_before = None, crashed.puts
    resumed = await write_manifest(listing, spec, crashed, chunk=4)

    assert crashed.docs == clean.docs
    assert resumed.done
    # The chunks before the checkpoint (a chunk and an index put each) were not written again.
    assert checkpoint.count == 16
    assert crashed.puts - puts_before == clean.puts - 2 * (checkpoint.count // 4)


async def test_a_listing_that_changed_before_the_checkpoint_stops_the_resume() -> None:
    spec = PlanSpec("files", "2")
    store = MemoryStore(fail_after=9)
    with pytest.raises(ConnectionError):
        await write_manifest(files(*(f"f{i}" for i in range(20))), spec, store, chunk=2)
    store.fail_after = None

    with pytest.raises(TerminalError) as caught:
        await write_manifest(files("new", *(f"f{i}" for i in range(20))), spec, store, chunk=2)

    assert caught.value.reason == "InputChanged"


async def test_a_complete_manifest_is_not_planned_again() -> None:
    store = MemoryStore()
    first = await write_manifest(files("a", "b"), PlanSpec("files", "1"), store)

    class MustNotList(Iterator[InputItem]):
        """An input listing that fails the test if planning reads it."""

        def __next__(self) -> InputItem:
            raise AssertionError("listed again")

    assert await write_manifest(MustNotList(), PlanSpec("files", "1"), store) == first


async def test_a_changed_planning_spec_cannot_resume_an_incomplete_plan() -> None:
    store = MemoryStore(fail_after=5)
    with pytest.raises(ConnectionError):
        await write_manifest(files(*(f"f{i}" for i in range(20))), PlanSpec("files", "2"), store, chunk=2)
    store.fail_after = None

    with pytest.raises(TerminalError) as caught:
        await write_manifest(files(*(f"f{i}" for i in range(20))), PlanSpec("files", "3"), store, chunk=2)

    assert caught.value.reason == "PlanChanged"


async def test_progress_is_told_each_checkpoint_once_its_chunk_is_written_and_the_end() -> None:
    store = MemoryStore()
    told: list[tuple[int, bool, bool]] = []

    def seen(index: PlanIndex) -> None:  # every chunk the index counts is in the store already
        chunks = -(-index.count // index.chunk)
        told.append((index.count, index.done, all(chunk_name(n) in store.docs for n in range(chunks))))

    await write_manifest(files(*(f"f{i}" for i in range(23))), PlanSpec("files", "5"), store, chunk=2, progress=seen)

    assert told == [(2, False, True), (4, False, True), (5, True, True)]


async def test_a_resumed_plan_tells_nothing_before_its_next_checkpoint_and_a_done_one_tells_at_once() -> None:
    listing = files(*(f"f{i:03d}" for i in range(100)))
    spec = PlanSpec("files", "3")
    store = MemoryStore(fail_after=9)
    with pytest.raises(ConnectionError):
        await write_manifest(listing, spec, store, chunk=4)
    store.fail_after = None
    told: list[int] = []

    done = await write_manifest(listing, spec, store, chunk=4, progress=lambda index: told.append(index.count))
    # 16 were checkpointed before the crash: the first count told is the next checkpoint's, after the replay.
    assert told == [20, 24, 28, 32, 34]
    again: list[PlanIndex] = []
    await write_manifest(listing, spec, store, chunk=4, progress=again.append)
    assert again == [done]


async def test_plan_progress_waits_for_a_count_or_the_end() -> None:
    progress = PlanProgress()
    waiting = asyncio.create_task(progress.reached(4))
    progress(PlanIndex(2, False, "s", "c", chunk=2))
    await asyncio.sleep(0)  # a turn of the loop, not a wait for time: the waiter has seen the checkpoint
    assert not waiting.done()
    progress(PlanIndex(4, False, "s", "c", chunk=2))
    assert await waiting == 4
    assert progress.chunk == 2
    progress(PlanIndex(5, True, "s", "c", "h", chunk=2))
    assert await progress.reached(100) == 5  # done: fewer than asked
    assert await PlanProgress(PlanIndex(0, True, "s", "c", "h")).reached(1) == 0  # an empty plan


def test_manifest_documents_round_trip() -> None:
    batch = MiniBatch(7, "tabular", ranges=(ByteRange("a.csv", 9, 40, "csv", 9),))
    assert MiniBatch.from_json(batch.to_json()) == batch
    grouped = MiniBatch(1, "files", ("region=eu/a",), partition=(("region", "eu"),))
    assert MiniBatch.from_json(grouped.to_json()) == grouped


@pytest.mark.parametrize(
    ("indexes", "expected"),
    [
        pytest.param([], "", id="nothing"),
        pytest.param([3], "3", id="one"),
        pytest.param([3, 7, 8, 9], "3,7-9", id="a run after a single"),
        pytest.param([0, 1, 2, 5, 6, 9], "0-2,5-6,9", id="several runs"),
        pytest.param([4, 4, 5], "4-5", id="duplicates ignored"),
    ],
)
def test_compress_ranges(indexes: list[int], expected: str) -> None:
    assert compress_ranges(indexes) == expected


@pytest.mark.parametrize(
    ("blobs", "spec", "reason", "why"),
    [
        ({"a.csv": b"id,x\n1," + b"y" * 200 + b"\n2,z\n"}, PlanSpec("tabular", "8"), "LineTooLong",
         "a row longer than the bound where a mini-batch is cut"),
        ({"a.csv": b"id," + b"h" * 200 + b"\n1,2\n"}, PlanSpec("tabular", "8"), "LineTooLong",
         "a header longer than the bound"),
        ({"a.jsonl": b'{"k": "a"}\n{"k": "' + b"v" * 200 + b'"}\n'}, PlanSpec("tabular", "8", ("k",)), "LineTooLong",
         "partitioning would hold the long line in memory"),
        ({"a.csv": b"id,k\n1,\xff\xfe\n"}, PlanSpec("tabular", "8", ("k",)), "InputNotUtf8",
         "a row that is not UTF-8"),
        ({"a.csv": b"id,\xe9\n1,2\n"}, PlanSpec("tabular", "8", ("k",)), "InputNotUtf8",
         "a header that is not UTF-8 (Latin-1)"),
        ({"a.csv": b"id,x\n1,\xe9t\xe9\n"}, PlanSpec("tabular", "8"), "InputNotUtf8",
         "the beginning of a file is checked without partition keys too"),
        ({"a.jsonl": b'{"x": "\xe9"}\n'}, PlanSpec("tabular", "8"), "InputNotUtf8", "JSON Lines alike"),
        ({"a.csv": b"id,k\n" + b"".join(b"%d,%d\n" % (i, i) for i in range(12))}, PlanSpec("tabular", "1KB", ("k",)),
         "TooManyPartitions", "more groups open at once than the bound"),
    ],
)  # fmt: skip
async def test_bounds_on_tenant_data_are_stalled_with_the_bound_named(
    monkeypatch: pytest.MonkeyPatch, blobs: dict[str, bytes], spec: PlanSpec, reason: str, why: str
) -> None:
    monkeypatch.setattr("amlops.external.paralleljob_plan.MAX_LINE_BYTES", 64)
    monkeypatch.setattr("amlops.external.paralleljob_plan.MAX_OPEN_PARTITIONS", 10)
    reader = MemoryReader(blobs)
    with pytest.raises(TerminalError) as caught:
        await collect(plan(reader.items(), spec, reader))
    assert caught.value.reason == reason, why
    bound = {"LineTooLong": "MAX_LINE_BYTES", "TooManyPartitions": "MAX_OPEN_PARTITIONS"}.get(reason, "UTF-8")
    assert bound in caught.value.message, why


async def test_within_the_bounds_nothing_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("amlops.external.paralleljob_plan.MAX_LINE_BYTES", 64)
    monkeypatch.setattr("amlops.external.paralleljob_plan.MAX_OPEN_PARTITIONS", 10)
    reader = MemoryReader({"a.csv": b"id,k\n" + b"".join(b"%d,%d\n" % (i, i % 10) for i in range(30))})
    batches = await collect(plan(reader.items(), PlanSpec("tabular", "1KB", ("k",)), reader))
    assert len(batches) == 10


async def test_a_missing_plan_chunk_is_named() -> None:
    with pytest.raises(TerminalError) as caught:
        await read_chunk(MemoryStore(), 3)
    assert caught.value.reason == "PlanBlobMissing"
    assert chunk_name(3) in caught.value.message


@pytest.mark.parametrize(
    ("blobs", "spec", "sizes", "why"),
    [
        ({f"p{i}.csv": b"id\n1\n" for i in range(7)}, PlanSpec("tabular", "1GB"), [3, 3, 1],
         "one range per small file: cut at the parts bound, not at the byte size"),
    ],
)  # fmt: skip
async def test_a_mini_batch_lists_at_most_the_parts_bound(
    monkeypatch: pytest.MonkeyPatch, blobs: dict[str, bytes], spec: PlanSpec, sizes: list[int], why: str
) -> None:
    monkeypatch.setattr("amlops.external.paralleljob_plan.MAX_MINI_BATCH_PARTS", 3)
    reader = MemoryReader(blobs)
    batches = await collect(plan(reader.items(), spec, reader))
    assert sorted((len(b.ranges) for b in batches), reverse=True) == sizes, why
    assert sum(len(rows_of(reader, list(b.ranges))) for b in batches) == sum(d.count(b"\n") for d in blobs.values()) - (
        len(blobs)
    ), "every row once"


async def test_a_partition_group_listing_more_ranges_than_the_bound_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Interleaved partition rows are one range each: a group of 7 with a bound of 3 cannot be one mini-batch,
    and partition keys make each group exactly one (azure-ai-ml parallel_run_function): refused, not cut."""
    monkeypatch.setattr("amlops.external.paralleljob_plan.MAX_MINI_BATCH_PARTS", 3)
    reader = MemoryReader({"a.csv": b"id,k\n" + b"".join(b"%d,%d\n" % (i, i % 2) for i in range(14))})
    with pytest.raises(TerminalError) as caught:
        await collect(plan(reader.items(), PlanSpec("tabular", "1GB", ("k",)), reader))
    assert caught.value.reason == "PartitionTooLarge"


async def test_utf8_cut_at_the_end_of_the_sample_is_text() -> None:
    data = b"id,x\n" + "1,ééééééééééééééééééééééééééééééééé\n".encode()
    assert data[:64].decode("utf-8", "ignore").encode() != data[:64], "the sample ends inside a character"
    reader = MemoryReader({"a.csv": data})
    assert await collect(plan(reader.items(), PlanSpec("tabular", "1KB"), reader))
