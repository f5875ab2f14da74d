"""Command-line arguments of an extraction, shared by ``python -m jobs.extract``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from saeray import catalogue
from saeray.db.tables import SAE, Dataset, ExtractionJob
from saeray.errors import InvalidInputError
from saeray.extraction.config import ExtractionConfig
from saeray.lifecycle import JobStatus

log = logging.getLogger(__name__)

EXIT_COMPLETED, EXIT_FAILED, EXIT_CANCELLED = 0, 1, 143  # 2 (usage): jobs.entrypoint

# Flags that map one to one onto ExtractionConfig fields.
_CONFIG_FLAGS: list[tuple[str, type, str]] = [
    ("hook", str, "hook point (default: the SAE's own), e.g. blocks.3.hook_resid_post"),
    ("model", str, "model folder or Hugging Face id (default: the SAE's model_name)"),
    ("max_tokens", int, "stop after the first N tokens of the corpus (default: all)"),
    ("context_length", int, "tokens per window, special tokens included (default 128)"),
    ("batch_size", int, "windows per encoder batch (default 64)"),
    ("top_k", int, "max-activating examples kept per feature (default 32)"),
    ("n_quantiles", int, "activation quantiles sampled per feature (default 5)"),
    ("quantile_samples", int, "examples sampled per quantile (default 2)"),
    ("top_tokens", int, "top tokens shown per feature (default 10)"),
    ("tracked_tokens", int, "tokens counted per feature (default 64)"),
    ("logit_effects", int, "promoted/suppressed tokens shown per feature (default 10)"),
    ("num_actors", int, "encoder actors (default 1; one per GPU is usual)"),
    ("gpus_per_actor", float, "GPUs per actor (default 1 if the cluster has GPUs, else 0)"),
    ("cpus_per_actor", float, "CPUs reserved per actor (default 1; fractions are fine)"),
    ("concurrent_batches", int, "batches an actor works on at once (default 2)"),
    ("torch_threads", int, "torch threads per batch (default: actor CPUs / batches)"),
    ("dtype", str, "model dtype (default bfloat16 on GPU, float32 on CPU)"),
    ("max_restarts", int, "restarts of a dead actor, its batches retried (default 3)"),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sae", help="SAE id, or a source (folder, hf://...) to register")
    parser.add_argument("--dataset", help="dataset id, or a corpus spec to register")
    parser.add_argument(
        "--job-id",
        help="run this queued extraction (its settings come from its row); with --sae and "
        "--dataset, create it under this id first",
    )
    for name, kind, text in _CONFIG_FLAGS:
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, type=kind, help=text)
    parser.add_argument(
        "--include-special-tokens",
        action="store_true",
        default=None,
        help="count BOS/CLS/SEP positions in statistics",
    )
    parser.add_argument(
        "--actor-resource",
        action="append",
        default=[],
        metavar="NAME=AMOUNT",
        help="a custom Ray resource each actor needs (repeatable)",
    )
    parser.add_argument("--database-url", help="default: SAERAY_DATABASE_URL")


def config_from_args(args: argparse.Namespace) -> ExtractionConfig:
    values: dict[str, Any] = {
        name: getattr(args, name) for name, _, _ in _CONFIG_FLAGS if getattr(args, name) is not None
    }
    if args.include_special_tokens:
        values["include_special_tokens"] = True
    if args.actor_resource:
        values["actor_resources"] = dict(_resource(text) for text in args.actor_resource)
    return ExtractionConfig.from_dict(values)


def _resource(text: str) -> tuple[str, float]:
    name, _, amount = text.partition("=")
    try:
        return name, float(amount)
    except ValueError:
        raise InvalidInputError(f"--actor-resource {text!r} is not NAME=AMOUNT") from None


def resolve_sae(session: Session, value: str, config: ExtractionConfig) -> str:
    """An SAE id as is; a source reuses the SAE registered from it, or registers it."""
    if session.get(SAE, value) is not None:
        return value
    path = str(Path(value).resolve()) if Path(value).exists() else value
    existing = session.exec(select(SAE).where(SAE.path == path)).first()
    if existing is not None:
        return existing.id
    return catalogue.register_sae(
        session, value, model_name=config.model, hook_point=config.hook
    ).id


def resolve_dataset(session: Session, value: str) -> str:
    if session.get(Dataset, value) is not None:
        return value
    return catalogue.register_dataset(session, value).id


def run_from_args(args: argparse.Namespace) -> int:
    """Create (or find) the job, run it, print its summary as JSON on the last line."""
    from saeray.db.engine import open_engine
    from saeray.db.migrate import ensure_schema_current
    from saeray.extraction.job import create_extraction_job, run_extraction_job

    engine = ensure_schema_current(open_engine(args.database_url))
    with Session(engine, expire_on_commit=False) as session:
        existing = session.get(ExtractionJob, args.job_id) if args.job_id else None
        if existing is not None:
            if args.sae or args.dataset:
                raise InvalidInputError(
                    f"extraction {args.job_id} exists already; run it with --job-id alone "
                    "(its settings come from its row)"
                )
            job_id = existing.id
        else:
            if not (args.sae and args.dataset):
                raise InvalidInputError(
                    "pass --sae and --dataset (or --job-id of a queued extraction)"
                )
            config = config_from_args(args)
            job_id = create_extraction_job(
                session,
                resolve_sae(session, args.sae, config),
                resolve_dataset(session, args.dataset),
                config,
                job_id=args.job_id,
            ).id
    print(f"extraction {job_id}", file=sys.stderr, flush=True)
    try:
        job = run_extraction_job(job_id, engine=engine)
    except Exception as exc:  # recorded on the row already; say it and exit non-zero
        print(f"extraction {job_id} failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(json.dumps(summary(job)))
    return EXIT_CANCELLED if job.status == JobStatus.CANCELLED else EXIT_COMPLETED


def summary(job: ExtractionJob) -> dict[str, Any]:
    return {
        "id": job.id,
        "status": job.status,
        "error": job.error,
        "tokens_processed": job.tokens_processed,
        "tokens_per_second": round(job.tokens_per_second, 1),
        "artifact_uri": job.artifact_uri,
        "statistics": job.statistics,
    }
