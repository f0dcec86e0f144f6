"""``amlops emulator``: serve the Azure emulator until interrupted. Argument parsing and the run loop only."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path

from amlops_emulator.seed import Seed
from amlops_emulator.server import EmulatorConfig, run_emulator, throttle_limits


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--arm-port", type=int, default=8443, help="HTTPS port of the ARM half; 0 = any free port")
    parser.add_argument("--batch-port", type=int, default=8080, help="HTTP port of the Batch half; 0 = any free port")
    parser.add_argument(
        "--batch-tls-port",
        type=int,
        default=8444,
        help="HTTPS port of the Batch half (bearer tokens); 0 = any free port",
    )
    parser.add_argument(
        "--state-dir", type=Path, default=Path(".amlops-emulator"), help="where ca.pem and endpoints.json go"
    )
    parser.add_argument("--seed", type=Path, default=None, help="seed file (YAML or JSON); default: one workspace")
    parser.add_argument("--speed", type=float, default=1.0, help="virtual seconds per real second (0 = frozen)")
    parser.add_argument("--page-size", type=int, default=50, help="items per list page")
    parser.add_argument(
        "--vm-sizes-key",
        choices=("amlCompute", "value"),
        default="amlCompute",
        help="key of the vmSizes list up to api-version 2021-07-01: the swagger's amlCompute (default), or value "
        "as the 2020-08-01 example shows it (clients must read either)",
    )
    for kind, size, refill in (("reads", 250, 25.0), ("writes", 200, 10.0), ("deletes", 200, 10.0)):
        parser.add_argument(f"--{kind}-bucket", type=int, default=size, help=f"ARM {kind} bucket size")
        parser.add_argument(f"--{kind}-refill", type=float, default=refill, help=f"ARM {kind} refill per second")
    parser.add_argument("--no-batch", action="store_true", help="serve the ARM half only")
    parser.add_argument(
        "--allow-remote-control",
        action="store_true",
        help="answer other machines on the control routes (/_emulator/...) and the Batch half (whose node agent "
        "runs task command lines on this machine); default: loopback only",
    )
    parser.add_argument(
        "--azurite",
        action="store_true",
        help="run Azurite (HTTPS) as the workspaces' storage account (default datastore, code uploads), and a "
        "loopback-only HTTPS proxy that reaches its production-style URL https://{account}.blob.core.localhost:{port}",
    )
    parser.add_argument("--proxy-port", type=int, default=0, help="port of that proxy; 0 = any free port")
    parser.add_argument("-v", "--verbose", action="store_true")


def config_from(args: argparse.Namespace) -> EmulatorConfig:
    from amlops_emulator.arm.state import ArmSettings

    return EmulatorConfig(
        state_dir=args.state_dir,
        host=args.host,
        arm_port=args.arm_port,
        batch_port=args.batch_port,
        batch_tls_port=args.batch_tls_port,
        seed=Seed.load(args.seed) if args.seed else Seed.default(),
        speed=args.speed,
        throttle=throttle_limits(
            (args.reads_bucket, args.reads_refill),
            (args.writes_bucket, args.writes_refill),
            (args.deletes_bucket, args.deletes_refill),
        ),
        arm=ArmSettings(page_size=args.page_size, vm_sizes_key_2020_08_01=args.vm_sizes_key),
        serve_batch=not args.no_batch,
        allow_remote_control=args.allow_remote_control,
        azurite=args.azurite,
        proxy_port=args.proxy_port,
    )


async def _serve(config: EmulatorConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    async with run_emulator(config) as running:
        print(running.endpoints_file.read_text(), file=sys.stderr, end="")
        await stop.wait()


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        config = config_from(args)
    except (OSError, ValueError) as exc:
        print(f"amlops emulator: {exc}", file=sys.stderr)
        return 2
    asyncio.run(_serve(config))
    return 0


def add_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``amlops emulator`` (entry point ``amlops.commands``: the operator's CLI never imports this package)."""
    parser = sub.add_parser("emulator", help="serve the local Azure emulator (ARM ML over HTTPS, Batch)")
    add_arguments(parser)
    parser.set_defaults(func=run)
