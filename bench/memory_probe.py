"""Run ``amlops run`` with tracemalloc, and write where its memory is whenever it gets SIGUSR2.

A bench tool, not part of the operator: ``python -X tracemalloc=8 bench/memory_probe.py <dump.json> run ...``.
On SIGUSR2 the operator's live allocations, grouped by file (the package they belong to) and by line, are
written to ``<dump.json>`` as JSON: the bench compares two dumps (N and 2N objects) to say where the memory per
object goes.
"""

from __future__ import annotations

import gc
import json
import signal
import sys
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


def dump(path: Path) -> None:
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
    partial = path.with_suffix(".partial")
    partial.write_text(
        json.dumps(
            {
                "traced_mb": round(traced / 2**20, 1),
                "peak_mb": round(peak / 2**20, 1),
                "by_package_kb": {k: round(v / 1024) for k, v in sorted(by_package.items(), key=lambda kv: -kv[1])},
                "top_lines": lines,
                "top_stacks": stacks,
                "body_retainers": retainers(),
            }
        )
    )
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
