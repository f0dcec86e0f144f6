"""``python -m amlops_emulator``: the same as ``amlops emulator``."""

from __future__ import annotations

import argparse

from amlops_emulator.cli import add_arguments, run


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m amlops_emulator", description="Serve the Azure emulator.")
    add_arguments(parser)
    return run(parser.parse_args())


if __name__ == "__main__":
    raise SystemExit(main())
