"""Ray job entrypoint: extract an SAE's features over a dataset.

    python -m jobs.extract --sae <sae id or source> --dataset <dataset id or spec> \
        [--hook ...] [--model ...] [--max-tokens N] [--context-length 128] [--batch-size 64] \
        [--top-k 32] [--num-actors 1] [--gpus-per-actor 1] [--job-id ...]
    python -m jobs.extract --job-id ext_...   # run a queued extraction whose row exists

Also under ``ray job submit --working-dir . -- python -m jobs.extract ...``, against a
local or remote cluster. Prints the job's summary as JSON on its last line. Exit status:
0 completed, 1 failed, 143 cancelled (SIGTERM, as ``ray job stop`` sends), 2 for a mistake
in the arguments.
"""

from __future__ import annotations

import sys

from jobs.entrypoint import run_entrypoint
from saeray.extraction.cli import add_arguments, run_from_args


def main(argv: list[str] | None = None) -> int:
    return run_entrypoint("python -m jobs.extract", __doc__, add_arguments, run_from_args, argv)


if __name__ == "__main__":
    sys.exit(main())
