"""Ray job entrypoint: label an extraction's features.

    python -m jobs.label --extraction ext_... --provider openai --model gpt-4o-mini \
        [--rpm 500] [--budget-usd 5] [--fallback anthropic:claude-3-5-haiku-latest]
    python -m jobs.label --job-id lab_...   # run (or resume) a job whose row exists

Also under ``ray job submit --working-dir . -- python -m jobs.label ...``. Prints the
job's summary as JSON on its last line. Exit status: 0 completed or budget_exceeded,
1 failed, 143 cancelled, 2 for a mistake in the arguments.
"""

from __future__ import annotations

import argparse
import logging
import sys

from saeray.cli.label import add_job_arguments, run_from_args
from saeray.errors import SaerayError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jobs.label",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_job_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        return run_from_args(args)
    except SaerayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
