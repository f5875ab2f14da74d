"""``saeray train``: train a TopK SAE here, and the flags of a training job, shared with its
Ray entrypoint ``python -m jobs.train``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from saeray.db.engine import session_scope
from saeray.db.migrate import ensure_schema_current
from saeray.errors import ConflictError, InvalidInputError, NotFoundError

# TrainingConfig fields set by a flag of the same name (dashes for underscores).
_CONFIG_FLAGS: dict[str, tuple[type, str]] = {
    "d_sae": (int, "number of latents, e.g. 2048"),
    "k": (int, "latents active per token, e.g. 32"),
    "tokens": (int, "corpus tokens to train on, e.g. 240000"),
    "lr": (float, "Adam learning rate (default 3e-3 * sqrt(2048 / d_sae))"),
    "batch_size": (int, "tokens per optimisation step (default 1024)"),
    "context_length": (int, "tokens per window, specials included (default 128)"),
    "seed": (int, "initialisation, shard order, held-out choice (default 0)"),
    "reuse": (float, "times each streamed token is trained on, on average (default 1)"),
    "buffer_tokens": (int, "shuffle buffer rows; memory rows*d_in*4 bytes (default 65536)"),
    "heldout_tokens": (int, "held-out tokens for explained variance (default 16384)"),
    "auxk_alpha": (float, "weight of the dead-latent auxiliary loss (default 1/32)"),
    "dead_after_tokens": (int, "tokens without firing that make a latent dead"),
    "windows_per_batch": (int, "windows per model forward pass (default 32)"),
    "threads_per_actor": (int, "torch threads of the activation actor"),
    "trainer_threads": (int, "torch threads of the trainer in this process"),
}
_REQUIRED = ("model", "hook", "dataset", "d_sae", "k", "tokens")


def add_job_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--job-id", help="run this existing queued job (or the id for a new one)")
    parser.add_argument("--model", help="Hugging Face model id or local folder")
    parser.add_argument("--hook", help="hook point, e.g. blocks.3.hook_resid_post")
    parser.add_argument("--dataset", help="dataset id or corpus spec, e.g. builtin:python-docs")
    parser.add_argument("--text-field", default="text", help="text field of the corpus records")
    parser.add_argument("--name", help="name of the SAE the job registers")
    for name, (kind, help_text) in _CONFIG_FLAGS.items():
        parser.add_argument("--" + name.replace("_", "-"), type=kind, help=help_text)
    parser.add_argument(
        "--b-dec-init", choices=("geometric_median", "mean"), help="decoder bias initialisation"
    )


def _given(args: argparse.Namespace) -> dict[str, Any]:
    names = [*_CONFIG_FLAGS, "b_dec_init"]
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def prepare_job(args: argparse.Namespace) -> str:
    """The id of the job to run: the row --job-id names, or a new row from the flags."""
    from saeray.db.tables import TrainingJob
    from saeray.training.job import create_training_job

    config = _given(args)
    described = config or any(getattr(args, name) for name in ("model", "hook", "dataset"))
    engine = ensure_schema_current()
    with session_scope(engine) as session:
        if args.job_id is not None and session.get(TrainingJob, args.job_id) is not None:
            if described:
                raise ConflictError(
                    f"training job {args.job_id} exists and its settings are in its row; "
                    f"pass --job-id {args.job_id} alone, or leave --job-id out for a new job"
                )
            return args.job_id
        missing = [name for name in _REQUIRED if getattr(args, name) is None]
        if missing and args.job_id is not None and not described:
            raise NotFoundError(f"no training job {args.job_id!r}; create one with the flags")
        if missing:
            flags = ", ".join("--" + name.replace("_", "-") for name in missing)
            raise InvalidInputError(f"a new training job needs {flags}")
        job = create_training_job(
            session,
            model=args.model,
            hook=args.hook,
            dataset=args.dataset,
            config=config,
            name=args.name,
            text_field=args.text_field,
            job_id=args.job_id,
        )
        return job.id


def job_summary(job: Any) -> dict[str, Any]:
    metrics = job.metrics or {}
    return {
        "job_id": job.id,
        "status": job.status,
        "sae_id": job.sae_id,
        "tokens_processed": job.tokens_processed,
        "explained_variance_heldout": metrics.get("explained_variance_heldout"),
        "l0": metrics.get("l0"),
        "dead_fraction": metrics.get("dead_fraction"),
        "error": job.error,
    }


def run_from_args(args: argparse.Namespace) -> int:
    from saeray.lifecycle import JobStatus
    from saeray.training.job import run_training_job

    job_id = prepare_job(args)
    try:
        job = run_training_job(job_id)
    except ConflictError:
        raise  # the row was not queued: nothing ran
    except Exception as exc:  # recorded on the row as failed, and logged with its traceback
        print(f"error: training {job_id} failed: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(job_summary(job)))
    return {JobStatus.COMPLETED: 0, JobStatus.CANCELLED: 143}.get(job.status, 1)


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser("train", help="train a TopK SAE on streamed activations, here")
    add_job_arguments(train)
    train.set_defaults(func=run_from_args)
