"""``saeray label run | estimate | compare | flagged | activate | set``, and the flags of
a labeling job, shared with its Ray entrypoint ``python -m jobs.label``."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

from saeray.db.engine import session_scope
from saeray.db.migrate import ensure_schema_current
from saeray.labeling.config import PROVIDERS, RESPONSE_FORMATS, LabelingConfig, ProviderSpec

# Config fields that take a value from a flag of the same name (dashes for underscores).
_VALUE_FLAGS: dict[str, tuple[type, str]] = {
    "model": (str, "model name (default for offline: top-tokens)"),
    "base_url": (str, "server base URL; required for openai-compatible"),
    "prompt_template": (str, "id of a stored prompt template (default: built-in)"),
    "features": (str, "feature indices, e.g. 0-999,1200 (default: all live features)"),
    "rpm": (float, "requests per minute for the whole pool"),
    "tpm": (float, "tokens per minute for the whole pool"),
    "concurrency": (int, "requests in flight at most (default 16)"),
    "actors": (int, "labeler actors (default: one per 32 of concurrency, at most 4)"),
    "budget_usd": (float, "stop as budget_exceeded once this much is spent"),
    "confidence_threshold": (float, "flag labels below this confidence (default 0.7)"),
    "max_attempts": (int, "requests per feature per provider (default 5)"),
    "request_timeout_s": (float, "seconds before a request is retried (default 60)"),
    "backoff_base_s": (float, "first retry delay, doubling with jitter (default 1)"),
    "backoff_max_s": (float, "longest retry delay (default 30)"),
    "max_output_tokens": (int, "answer token limit (default 256)"),
    "top_examples": (int, "max-activating examples in the prompt (default 10)"),
    "quantile_examples": (int, "examples across the activation range (default 5)"),
}


def add_job_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--job-id", help="run this existing queued (or interrupted) job")
    parser.add_argument("--extraction", help="extraction whose features to label")
    parser.add_argument("--provider", choices=PROVIDERS)
    for name, (kind, help_text) in _VALUE_FLAGS.items():
        parser.add_argument("--" + name.replace("_", "-"), type=kind, help=help_text)
    parser.add_argument("--response-format", choices=RESPONSE_FORMATS)
    parser.add_argument(
        "--only-unlabeled", action="store_true", help="skip features with an active label"
    )
    parser.add_argument(
        "--fallback", help="comma-separated provider:model[@base_url] tried in order"
    )


def config_from_args(args: argparse.Namespace) -> LabelingConfig | None:
    """The config the flags describe, or None when they describe none (only --job-id)."""
    given: dict[str, Any] = {
        name: getattr(args, name) for name in _VALUE_FLAGS if getattr(args, name) is not None
    }
    if "prompt_template" in given:
        given["prompt_template_id"] = given.pop("prompt_template")
    if args.response_format:
        given["response_format"] = args.response_format
    if args.only_unlabeled:
        given["only_unlabeled"] = True
    if args.fallback:
        given["fallback"] = tuple(ProviderSpec.parse(p) for p in args.fallback.split(","))
    if args.provider is None and not given and args.extraction is None:
        return None
    if args.provider is None or args.extraction is None:
        from saeray.errors import InvalidInputError

        raise InvalidInputError(
            "a new labeling job needs --extraction and --provider (and --model); to run an "
            "existing job pass --job-id alone"
        )
    return LabelingConfig(provider=args.provider, **given).validated()


def job_summary(job: Any) -> dict[str, Any]:
    return {
        "job_id": job.id,
        "status": job.status,
        "features_total": job.features_total,
        "labeled": job.features_labeled,
        "failed": job.features_failed,
        "tokens_in": job.tokens_in,
        "tokens_out": job.tokens_out,
        "cost_usd": round(job.cost_usd, 6),
        "error": job.error,
    }


def prepare_job(args: argparse.Namespace) -> str:
    """The id of the job to run: the row --job-id names, or a new row from the flags."""
    from saeray.db.tables import LabelingJob
    from saeray.errors import ConflictError
    from saeray.labeling.store import create_labeling_job

    config = config_from_args(args)
    engine = ensure_schema_current()
    with session_scope(engine) as session:
        if args.job_id is not None and session.get(LabelingJob, args.job_id) is not None:
            if config is not None:
                raise ConflictError(
                    f"labeling job {args.job_id} exists and its config is in its row; "
                    f"pass --job-id {args.job_id} alone, or leave --job-id out for a new job"
                )
            return args.job_id
        if config is None:
            from saeray.errors import NotFoundError

            raise NotFoundError(
                f"no labeling job {args.job_id!r}; create one with --extraction and --provider"
            )
        return create_labeling_job(session, args.extraction, config, job_id=args.job_id).id


def run_from_args(args: argparse.Namespace) -> int:
    from saeray.labeling.pipeline import run_labeling_job
    from saeray.lifecycle import JobStatus

    job = run_labeling_job(prepare_job(args))
    print(json.dumps(job_summary(job)))
    return {JobStatus.COMPLETED: 0, JobStatus.BUDGET_EXCEEDED: 0, JobStatus.CANCELLED: 143}.get(
        job.status, 1
    )


def _estimate(args: argparse.Namespace) -> int:
    from saeray.labeling.estimate import estimate_labeling_cost

    config = config_from_args(args)
    if config is None:
        from saeray.errors import InvalidInputError

        raise InvalidInputError("estimate needs --extraction, --provider and --model")
    with session_scope(ensure_schema_current()) as session:
        print(json.dumps(asdict(estimate_labeling_cost(session, args.extraction, config))))
    return 0


def _compare(args: argparse.Namespace) -> int:
    from saeray.labeling.compare import compare_labeling_jobs

    with session_scope(ensure_schema_current()) as session:
        result = compare_labeling_jobs(session, args.job_a, args.job_b, limit=args.limit)
    print(json.dumps(asdict(result), indent=2))
    return 0


def _flagged(args: argparse.Namespace) -> int:
    from saeray.labeling.review import flagged_labels

    with session_scope(ensure_schema_current()) as session:
        rows = flagged_labels(session, labeling_job_id=args.job_id, limit=args.limit)
        for row in rows:
            print(json.dumps({k: getattr(row, k) for k in ("feature_id", "label", "confidence")}))
    return 0


def _activate(args: argparse.Namespace) -> int:
    from saeray.labeling.review import activate_labels

    features = [int(part) for part in args.feature_ids.split(",")] if args.feature_ids else None
    with session_scope(ensure_schema_current()) as session:
        changed = activate_labels(session, args.job_id, features)
    print(f"{changed} feature(s) now show the labels of {args.job_id}")
    return 0


def _set(args: argparse.Namespace) -> int:
    from saeray.labeling.review import set_manual_label

    with session_scope(ensure_schema_current()) as session:
        row = set_manual_label(session, args.feature_id, args.label, args.category)
    print(f"feature {row.feature_id} is now labeled {row.label!r} (label {row.id})")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    label = subparsers.add_parser("label", help="label features with an LLM or offline")
    actions = label.add_subparsers(dest="action", required=True)
    run = actions.add_parser("run", help="create and run a labeling job here")
    add_job_arguments(run)
    run.set_defaults(func=run_from_args)
    estimate = actions.add_parser("estimate", help="estimate a labeling job's cost")
    add_job_arguments(estimate)
    estimate.set_defaults(func=_estimate)
    compare = actions.add_parser("compare", help="agreement of two labeling jobs")
    compare.add_argument("job_a")
    compare.add_argument("job_b")
    compare.add_argument("--limit", type=int, default=20, help="rows side by side")
    compare.set_defaults(func=_compare)
    flagged = actions.add_parser("flagged", help="low-confidence labels for review")
    flagged.add_argument("job_id")
    flagged.add_argument("--limit", type=int, default=100)
    flagged.set_defaults(func=_flagged)
    activate = actions.add_parser("activate", help="show a labeling job's labels")
    activate.add_argument("job_id")
    activate.add_argument("--feature-ids", help="comma-separated feature ids (default: all)")
    activate.set_defaults(func=_activate)
    manual = actions.add_parser("set", help="set a feature's label by hand")
    manual.add_argument("feature_id", type=int)
    manual.add_argument("label")
    manual.add_argument("--category")
    manual.set_defaults(func=_set)
