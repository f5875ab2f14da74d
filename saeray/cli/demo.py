"""``saeray demo``: the offline end-to-end main job (train, extract, label, serve)."""

from __future__ import annotations

import argparse
import sys
import time

from saeray.demo import DemoOptions, run_demo


def _demo(args: argparse.Namespace) -> int:
    run_demo(DemoOptions(port=args.port, features_shown=args.show, retrain=args.retrain))
    keep_serving = args.serve if args.serve is not None else sys.stdin.isatty()
    if keep_serving:
        print("serving until Ctrl-C", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    demo = subparsers.add_parser(
        "demo", help="offline end to end: train an SAE, extract, label, serve the browser"
    )
    demo.add_argument("--port", type=int, default=8000, help="HTTP port of the API")
    demo.add_argument("--show", type=int, default=5, help="features to print")
    demo.add_argument("--retrain", action="store_true", help="train even if a cached SAE fits")
    demo.add_argument(
        "--serve",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="keep serving the browser after the run (default: when run from a terminal)",
    )
    demo.set_defaults(func=_demo)
