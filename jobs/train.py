"""Ray job entrypoint: train a TopK SAE on activations streamed from Ray Data.

    python -m jobs.train --model <id or path> --hook blocks.3.hook_resid_post \
        --dataset <dataset id or spec> --d-sae 2048 --k 32 --tokens 160000 \
        [--lr 3e-3] [--batch-size 1024] [--context-length 128] [--seed 0] [--reuse 2] \
        [--name ...] [--job-id trn_...]
    python -m jobs.train --job-id trn_...   # run a queued training job whose row exists

Also under ``ray job submit --working-dir . -- python -m jobs.train ...``. Prints the job's
summary as JSON on its last line. Exit status: 0 completed, 1 failed, 143 cancelled
(SIGTERM, as ``ray job stop`` sends), 2 for a mistake in the arguments.
"""

from __future__ import annotations

import argparse
import logging
import sys

from saeray.cli.train import add_job_arguments, run_from_args
from saeray.errors import SaerayError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.train", description=__doc__)
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
