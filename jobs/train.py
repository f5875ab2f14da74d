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

import sys

from jobs.entrypoint import run_entrypoint
from saeray.cli.train import add_job_arguments, run_from_args


def main(argv: list[str] | None = None) -> int:
    return run_entrypoint("python -m jobs.train", __doc__, add_job_arguments, run_from_args, argv)


if __name__ == "__main__":
    sys.exit(main())
