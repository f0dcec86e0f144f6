"""Command line: ``amlops run | emulator | demo | crdgen | version``. Argument parsing only."""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
from collections.abc import Sequence
from pathlib import Path

from amlops import __version__

# Commands of the development packages (the Azure emulator, the test bed and its demo): they register through
# this entry-point group, so the operator never imports them and an installation without them (the image) has
# no such command. Each entry point is a function that adds its sub-command to the parser.
COMMANDS_GROUP = "amlops.commands"
LOCAL_ONLY = ("emulator", "demo")


def _plugins() -> list[importlib.metadata.EntryPoint]:
    return sorted(importlib.metadata.entry_points(group=COMMANDS_GROUP), key=lambda ep: ep.name)


def local_only_refusal(argv: Sequence[str]) -> str | None:
    """Why a development command cannot run in this installation (its package is absent), or None."""
    if not argv or argv[0] not in LOCAL_ONLY or any(ep.name == argv[0] for ep in _plugins()):
        return None
    return (
        f"amlops {argv[0]}: not available in this installation: the operator image ships without the emulator, "
        f"the test bed and the demo; run it from a source checkout (uv run amlops {argv[0]})"
    )


def _run(args: argparse.Namespace) -> int:
    from amlops.handlers.app import run

    return run(
        namespaces=args.namespace,
        liveness_endpoint=None if args.liveness == "off" else args.liveness,
        standalone=args.peering is None,
        peering_name=args.peering,
        verbose=args.verbose,
        metrics_port=args.metrics_port,
    )


def _crdgen(args: argparse.Namespace) -> int:
    from amlops.api import crdgen

    if args.check:
        expected = [(target / name, text) for target in args.out for name, text in crdgen.render().items()]
        expected += [(args.chart / name, text) for name, text in crdgen.render_chart().items()]
        stale = [path for path, text in expected if not path.is_file() or path.read_text() != text]
        for path in stale:
            print(f"out of date: {path}", file=sys.stderr)
        return 1 if stale else 0
    for path in [*crdgen.write(*args.out), *crdgen.write_chart(args.chart)]:
        print(path)
    return 0


def _version(_: argparse.Namespace) -> int:
    print(f"amlops {__version__}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="amlops", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the operator")
    run.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="watch this namespace (repeatable); default: all",
    )
    run.add_argument("--liveness", default="http://0.0.0.0:8080/healthz", help="liveness endpoint URL, or 'off'")
    run.add_argument("--metrics-port", type=int, default=9090, help="port of /metrics (0: off)")
    run.add_argument("--peering", default=None, help="kopf peering name for HA (default: standalone)")
    run.add_argument("-v", "--verbose", action="store_true")
    run.set_defaults(func=_run)

    for plugin in _plugins():
        plugin.load()(sub)

    crd = sub.add_parser("crdgen", help="write the CRDs and the chart's list of kinds generated from the typed models")
    crd.add_argument(
        "--out",
        type=Path,
        action="append",
        help="target folder (repeatable); default: crds/ and charts/amlops/crds/",
    )
    crd.add_argument(
        "--chart",
        type=Path,
        default=Path("charts/amlops"),
        help="the chart whose templates/_kinds.tpl lists the kinds (RBAC, admission policy); default: charts/amlops",
    )
    crd.add_argument("--check", action="store_true", help="exit 1 if the files differ from the models")
    crd.set_defaults(func=_crdgen)

    version = sub.add_parser("version", help="print the version")
    version.set_defaults(func=_version)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    refusal = local_only_refusal(sys.argv[1:] if argv is None else argv)
    if refusal is not None:
        print(refusal, file=sys.stderr)
        return 2
    args = _parser().parse_args(argv)
    if getattr(args, "out", None) is None and args.command == "crdgen":
        args.out = [Path("crds"), Path("charts/amlops/crds")]
    result: int = args.func(args)
    return result
