"""What every ``python -m jobs.<kind>`` entrypoint does around its own arguments and run."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from saeray.errors import SaerayError

EXIT_USAGE = 2  # a mistake in the arguments, told on one `error:` line


def run_entrypoint(
    prog: str,
    description: str,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    run_from_args: Callable[[argparse.Namespace], int],
    argv: list[str] | None = None,
) -> int:
    """Parse ``argv``, log to stderr, run; a user's mistake exits 2 with its message. A Ray
    this process connected to is left again at the end, so that in-process callers
    (tests) start from where they were."""
    parser = argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import ray

    connected_before = ray.is_initialized()
    try:
        return run_from_args(args)
    except SaerayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        if ray.is_initialized() and not connected_before:
            ray.shutdown()
