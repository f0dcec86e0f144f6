"""Command line: ``amlops run | emulator | demo | crdgen | version``. Argument parsing only."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path

from amlops import __version__

# Commands for a source checkout only: the operator image leaves these modules out, so that nothing in it can
# start an emulator (which accepts fixed credentials and runs task command lines) or a test bed by accident.
LOCAL_ONLY = {
    "emulator": ("amlops.emulator",),
    "demo": ("amlops.demo", "amlops.testbed", "amlops.emulator", "amlops.pki"),
}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def local_only_refusal(argv: Sequence[str]) -> str | None:
    """Why a local-only command cannot run in this installation (its modules are absent), or None."""
    modules = LOCAL_ONLY.get(argv[0], ()) if argv else ()
    missing = [m for m in modules if not _installed(m)]
    if not missing:
        return None
    return (
        f"amlops {argv[0]}: not available in this installation ({', '.join(missing)} absent): the operator image "
        f"ships without the emulator, the test bed and the demo; run it from a source checkout (uv run amlops "
        f"{argv[0]})"
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


def _demo(args: argparse.Namespace) -> int:
    from amlops import demo

    return demo.run(exit_when_done=args.exit, timeout=args.timeout, workdir=args.workdir)


def _emulator(args: argparse.Namespace) -> int:
    from amlops.emulator import cli as emulator_cli

    return emulator_cli.run(args)


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

    if local_only_refusal(["demo"]) is None:
        demo = sub.add_parser("demo", help="run the local demo: test bed, operator, samples")
        demo.add_argument("--exit", action="store_true", help="exit once the samples are reconciled")
        demo.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the samples")
        demo.add_argument("--workdir", type=Path, default=None, help="where logs and state go (default: a temp dir)")
        demo.set_defaults(func=_demo)

    if local_only_refusal(["emulator"]) is None:
        emulator = sub.add_parser("emulator", help="serve the local Azure emulator (ARM ML over HTTPS, Batch)")
        from amlops.emulator import cli as emulator_cli

        emulator_cli.add_arguments(emulator)
        emulator.set_defaults(func=_emulator)

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
