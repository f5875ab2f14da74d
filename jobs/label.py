"""Ray job entrypoint: label an extraction's features.

    python -m jobs.label --extraction ext_... --provider openai --model gpt-4o-mini \
        [--rpm 500] [--budget-usd 5] [--fallback anthropic:claude-3-5-haiku-latest]
    python -m jobs.label --job-id lab_...   # run (or resume) a job whose row exists

Also under ``ray job submit --working-dir . -- python -m jobs.label ...``. Prints the
job's summary as JSON on its last line. Exit status: 0 completed or budget_exceeded,
1 failed, 143 cancelled, 2 for a mistake in the arguments.
"""

from __future__ import annotations

import sys

from jobs.entrypoint import run_entrypoint
from saeray.cli.label import add_job_arguments, run_from_args


def main(argv: list[str] | None = None) -> int:
    return run_entrypoint("python -m jobs.label", __doc__, add_job_arguments, run_from_args, argv)


if __name__ == "__main__":
    sys.exit(main())
