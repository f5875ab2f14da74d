"""An extraction job: a database row first, then a run that owns the row until it ends.

``create_extraction_job`` validates the request (SAE, dataset, model, hook, widths) and
writes a queued row; nothing is loaded or run. ``run_extraction_job`` (what
``python -m jobs.extract --job-id <id>`` calls, as a Ray job whose submission id is the row
id) moves the row through loading -> extracting -> saving -> completed, or ends it as
failed (with the error) or cancelled (SIGTERM, what ``ray job stop`` sends).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from saeray.catalogue import get
from saeray.db.tables import SAE, Dataset, ExtractionJob
from saeray.errors import ConflictError, InvalidInputError, SaerayError
from saeray.extraction.config import ExtractionConfig
from saeray.lifecycle import (
    JobCancelled,
    JobStatus,
    on_sigterm,
    raise_cancelled,
    record_ending,
    transition,
)

log = logging.getLogger(__name__)


def create_extraction_job(
    session: Session,
    sae_id: str,
    dataset_id: str,
    config: ExtractionConfig | Mapping[str, Any] | None = None,
    *,
    job_id: str | None = None,
) -> ExtractionJob:
    """Validate and write a queued extraction row (progress 0); returns it.

    Refused here, before any job exists: an unknown SAE or dataset, unknown settings, a
    model or hook that cannot be found, an SAE whose d_in differs from the model's width
    at the hook, and a streamed dataset without ``max_tokens``.
    """
    from saeray.corpus import parse_corpus_spec

    if not isinstance(config, ExtractionConfig):
        config = ExtractionConfig.from_dict(config)
    sae = get(session, SAE, sae_id)
    dataset = get(session, Dataset, dataset_id)
    config = config.with_defaults(model=sae.model_name, hook=sae.hook_point)
    if config.model is None:
        raise InvalidInputError(
            f"SAE {sae.id} does not say which model it was trained on; pass model= (--model)"
        )
    if config.hook is None:
        raise InvalidInputError(
            f"SAE {sae.id} does not say which hook it reads; pass hook= (--hook), e.g. "
            "'blocks.3.hook_resid_post'"
        )
    spec = parse_corpus_spec(dataset.spec, text_field=dataset.text_field)
    if spec.kind == "hf" and config.max_tokens is None:
        raise InvalidInputError(
            f"dataset {dataset.id} ({dataset.spec}) is streamed and has no known end; "
            "pass max_tokens (--max-tokens)"
        )
    width = model_width_at(config.model, config.hook)
    if width != sae.d_in:
        raise InvalidInputError(
            f"SAE {sae.id} reads vectors of width {sae.d_in}, but {config.model} has width "
            f"{width} at {config.hook}; use the hook (and model) the SAE was trained on"
        )
    job = ExtractionJob(
        sae_id=sae.id,
        dataset_id=dataset.id,
        model_name=config.model,
        hook_point=config.hook,
        config=config.to_dict(),
        tokens_planned=config.max_tokens or 0,
    )
    if job_id is not None:
        if session.get(ExtractionJob, job_id) is not None:
            raise ConflictError(f"extraction {job_id} exists already; pick another id")
        job.id = job_id
    session.add(job)
    session.commit()
    session.refresh(job)
    return job


def model_width_at(model: str, hook: str) -> int:
    """The model's activation width at ``hook``, from its config alone: the model is built
    on the meta device (no weights read) and probed there."""
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    from saeray.lm import hook_width, resolve_hook
    from saeray.lm.loading import wants_causal_lm

    try:
        model_config = AutoConfig.from_pretrained(model)
    except (OSError, ValueError) as exc:
        raise InvalidInputError(
            f"cannot read the config of model {model!r}: {str(exc).splitlines()[0]}; pass a "
            "local model folder or a Hugging Face id that is in the cache"
        ) from exc
    auto_class = AutoModelForCausalLM if wants_causal_lm(model_config) else AutoModel
    with torch.device("meta"):
        skeleton = auto_class.from_config(model_config)
    point = resolve_hook(skeleton, hook)  # an unknown hook is refused here, by name
    try:
        return hook_width(skeleton, point)
    except Exception:  # a model whose forward cannot run on meta tensors
        return int(model_config.get_text_config().hidden_size)


def run_extraction_job(job_id: str, *, engine: Engine | None = None) -> ExtractionJob:
    """Run a queued extraction to its end and return its row. A failure is recorded on the
    row (status failed, with the message) and raised; a cancellation is recorded and the
    row returned."""
    from saeray.db.engine import open_engine
    from saeray.extraction.run import ExtractionRun

    engine = engine or open_engine()
    with Session(engine, expire_on_commit=False) as session:
        job = get(session, ExtractionJob, job_id)
        if job.status != JobStatus.QUEUED:
            raise ConflictError(
                f"extraction {job_id} is {job.status}; only a queued extraction can run. "
                "Create a new one to extract again"
            )
        transition(session, job, JobStatus.LOADING)
        run = ExtractionRun(session, job, engine)
        started = time.monotonic()
        try:
            run.connect_ray()  # Ray installs its own SIGTERM handler (sys.exit) here ...
            with on_sigterm(raise_cancelled):  # ... which this one replaces for the run
                run.execute()
        except (JobCancelled, KeyboardInterrupt, SystemExit) as exc:
            run.abandon()
            reason = str(exc) if isinstance(exc, JobCancelled) else f"{type(exc).__name__} {exc}"
            record_ending(session, job, JobStatus.CANCELLED, reason)
        except BaseException as exc:
            run.abandon()
            message = str(exc) if isinstance(exc, SaerayError) else f"{type(exc).__name__}: {exc}"
            record_ending(session, job, JobStatus.FAILED, message)
            raise
        finally:
            log.info("extraction %s ended %s after %.1f s", job_id, job.status,
                     time.monotonic() - started)  # fmt: skip
        return job
