"""Run ``amlops run`` and write where its memory is whenever it gets SIGUSR2.

A bench tool, not part of the operator: ``python [-X tracemalloc=8] bench/memory_probe.py <dump.json> run ...``.
On SIGUSR2 the allocators' figures (live and free-but-kept memory: ``allocator``) and what holds the objects'
bodies are written to ``<dump.json>`` as JSON; without tracemalloc also the live objects by type (``census``), under
it the operator's live allocations, grouped by file (the package they belong to) and by line: the bench compares
two dumps (N and 2N objects) to say where the memory per object goes.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import signal
import sys
import tempfile
import tracemalloc
from pathlib import Path
from types import FrameType

TOP = 40


def _package(filename: str) -> str:
    """``.../site-packages/azure/mgmt/...`` → ``azure/mgmt``; the operator's own files by module folder."""
    parts = Path(filename).parts
    for anchor in ("site-packages", "amlops", "lib"):
        if anchor in parts:
            rest = parts[parts.index(anchor) + 1 :]
            prefix = ("amlops",) if anchor == "amlops" else ()
            return "/".join((*prefix, *rest[:2])) if rest else anchor
    return filename


def _describe(obj: object) -> str:
    if isinstance(obj, dict):
        return "dict(" + ",".join(sorted(str(k) for k in list(obj)[:6])) + ")"
    if isinstance(obj, FrameType):
        return f"frame {obj.f_code.co_filename.rsplit('/', 1)[-1]}:{obj.f_code.co_name}"
    return type(obj).__qualname__


def retainers(sample: int = 30) -> dict[str, int]:
    """What holds the objects' bodies that are still alive (dicts with apiVersion, kind, metadata, spec): the
    chain of referrer kinds two levels up, counted over a sample. A body kept by nothing but a running pass is
    transient; one kept by a cache is per object."""
    bodies = [o for o in gc.get_objects() if isinstance(o, dict) and {"apiVersion", "kind", "spec"} <= o.keys()]
    chains: dict[str, int] = {}
    frame = sys._getframe()
    for body in bodies[:sample]:
        for first in gc.get_referrers(body):
            if first is bodies or first is frame:
                continue
            seconds = [r for r in gc.get_referrers(first) if r is not bodies and r is not frame][:3]
            chain = f"{_describe(first)} <- {' | '.join(_describe(r) for r in seconds)}"
            chains[chain] = chains.get(chain, 0) + 1
    return {"bodies_alive": len(bodies), **dict(sorted(chains.items(), key=lambda kv: -kv[1])[:15])}


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def allocator() -> dict[str, float]:
    """How much of the process's heap is live and how much is free but kept: CPython's small-object allocator
    (``sys._debugmallocstats``, which writes to the C stderr) and glibc's ``mallinfo2`` for everything larger, or
    jemalloc's figures when it allocates everything (the image's allocator). Live memory far below RSS means
    fragmentation (freed, not returned), not objects kept."""
    stats: dict[str, float] = {}
    with tempfile.TemporaryFile() as out:
        saved = os.dup(2)
        try:
            os.dup2(out.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        text = out.read().decode(errors="replace")
    wanted = {
        "arenas allocated current": "pymalloc_arenas",
        "bytes in allocated blocks": "pymalloc_live_mb",
        "bytes in available blocks": "pymalloc_free_blocks_mb",
        "unused pools": "pymalloc_unused_pools_mb",
    }
    for line in text.splitlines():
        for label, key in wanted.items():
            if label in line and "=" in line:
                value = float(line.rsplit("=", 1)[1].replace(",", "").strip() or 0)
                stats[key] = value if key == "pymalloc_arenas" else round(value / 2**20, 1)
    jemalloc = _jemalloc()
    if jemalloc:  # the image's allocator (LD_PRELOAD): glibc's heap is then unused
        return stats | jemalloc
    try:
        info = ctypes.CDLL("libc.so.6").mallinfo2
        info.restype = _MallInfo2
        m = info()
        stats |= {
            "glibc_heap_mb": round(m.arena / 2**20, 1),
            "glibc_mmapped_mb": round(m.hblkhd / 2**20, 1),
            "glibc_live_mb": round(m.uordblks / 2**20, 1),
            "glibc_free_mb": round(m.fordblks / 2**20, 1),
            "glibc_trimmable_mb": round(m.keepcost / 2**20, 1),
        }
    except (OSError, AttributeError):  # not glibc, or older than 2.33
        pass
    return stats


def _jemalloc() -> dict[str, float]:
    """jemalloc's own figures (``mallctl``) when it is the process's allocator: live (allocated), in pages it
    uses (active), resident, and kept but returned to the system (retained: not in RSS)."""
    try:
        lib = ctypes.CDLL("libjemalloc.so.2", mode=os.RTLD_NOLOAD)
    except OSError:
        return {}
    epoch = ctypes.c_uint64(1)  # refreshes the statistics
    lib.mallctl(b"epoch", None, None, ctypes.byref(epoch), ctypes.c_size_t(ctypes.sizeof(epoch)))
    stats: dict[str, float] = {}
    for name in ("allocated", "active", "resident", "retained"):
        value, size = ctypes.c_size_t(), ctypes.c_size_t(ctypes.sizeof(ctypes.c_size_t))
        if lib.mallctl(f"stats.{name}".encode(), ctypes.byref(value), ctypes.byref(size), None, 0) == 0:
            stats[f"jemalloc_{name}_mb"] = round(value.value / 2**20, 1)
    return stats


def census(top: int = 25) -> dict[str, int]:
    """Live objects by type, most numerous first (what a burst holds while it lasts)."""
    counts: dict[str, int] = {}
    for obj in gc.get_objects():
        name = type(obj).__qualname__
        counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1])[:top])


def dump(path: Path) -> None:
    if not tracemalloc.is_tracing():
        _write(path, {"allocator": allocator(), "objects": census(), "body_retainers": retainers()})
        return
    snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
    by_package: dict[str, int] = {}
    for stat in snapshot.statistics("filename"):
        key = _package(stat.traceback[0].filename)
        by_package[key] = by_package.get(key, 0) + stat.size
    lines = [
        {"where": f"{s.traceback[0].filename}:{s.traceback[0].lineno}", "kb": round(s.size / 1024), "count": s.count}
        for s in snapshot.statistics("lineno")[:TOP]
    ]
    # Who called the biggest allocators (a JSON decode says little; its caller says whose data it is).
    stacks = [
        {
            "kb": round(s.size / 1024),
            "stack": [f"{f.filename.rsplit('site-packages/', 1)[-1]}:{f.lineno}" for f in s.traceback],
        }
        for s in snapshot.statistics("traceback")[:8]
    ]
    traced, peak = tracemalloc.get_traced_memory()
    _write(
        path,
        {
            "traced_mb": round(traced / 2**20, 1),
            "peak_mb": round(peak / 2**20, 1),
            "allocator": allocator(),
            "by_package_kb": {k: round(v / 1024) for k, v in sorted(by_package.items(), key=lambda kv: -kv[1])},
            "top_lines": lines,
            "top_stacks": stacks,
            "body_retainers": retainers(),
        },
    )


def _write(path: Path, doc: dict[str, object]) -> None:
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(doc))
    partial.rename(path)  # whole or absent: the bench waits for the name


def main() -> int:
    target = Path(sys.argv[1])

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        dump(target)

    signal.signal(signal.SIGUSR2, on_signal)
    from amlops.cli import main as amlops  # after the handler: the import is part of what is measured

    return amlops(sys.argv[2:])


if __name__ == "__main__":
    raise SystemExit(main())
