"""The ``saeray`` command line. Each module here adds one subcommand via ``register``."""

from __future__ import annotations

import argparse
import importlib
import sys

from saeray.errors import SaerayError

# Subcommand modules, each exposing ``register(subparsers)``; a handler returns an exit code.
COMMAND_MODULES = ("db", "sae", "train", "label", "serve", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="saeray", description="Extract, label and score SAE features on Ray."
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"saeray.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except SaerayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
