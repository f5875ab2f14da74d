"""A training job: a database row first, then a run that owns the row until it ends.

``create_training_job`` validates the request (dataset, model, hook, settings) and writes a
queued row; nothing is loaded or run. ``run_training_job`` (what
``python -m jobs.train --job-id <id>`` calls, as a Ray job whose submission id is the row id)
moves the row through loading -> training -> saving -> completed, writing progress, tokens
and metrics at most 1 s apart (and to the log every 2 s); it ends the row as failed (with the
error) or cancelled (SIGTERM, what ``ray job stop`` sends).

The trained SAE is written in saeray's format to ``saes/<job id>/`` of the artifact store
(a local folder directly; a remote store gets an upload) and registered with source
``trained`` at that folder or URI, so that extraction actors on any node can load it; the
job row points at it (``sae_id``).
"""

from __future__ import annotations

import logging
import os
import signal
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow.fs as pafs
from sqlalchemy.engine import Engine
from sqlmodel import Session

from saeray.artifacts import ArtifactStore
from saeray.catalogue import get, register_dataset, register_sae
from saeray.db.tables import SAE, Dataset, SAESource, TrainingJob
from saeray.errors import ConflictError, NotFoundError, SaerayError
from saeray.lifecycle import (
    JobCancelled,
    JobStatus,
    is_terminal,
    on_sigterm,
    raise_cancelled,
    record_ending,
    report_progress,
    transition,
)
from saeray.training.config import TrainingConfig

if TYPE_CHECKING:  # torch: imported where training runs, not where jobs are created (the API)
    from saeray.training.fit import TrainingProgress, TrainingResult

log = logging.getLogger(__name__)

REPORT_INTERVAL_S = 1.0
LOG_INTERVAL_S = 2.0


def create_training_job(
    session: Session,
    *,
    model: str | os.PathLike[str],
    hook: str,
    dataset: str,
    config: TrainingConfig | Mapping[str, Any],
    name: str | None = None,
    text_field: str = "text",
    job_id: str | None = None,
) -> TrainingJob:
    """Validate and write a queued training row (progress 0); returns it.

    ``dataset``: a dataset id, or a corpus spec (``builtin:python-docs``, a path, ``hf:...``)
    registered on the way. ``name`` names the SAE the job will register. Refused here, before
    any job exists: an unknown dataset id, bad settings, a model or hook that cannot be found.
    """
    from saeray.extraction.job import model_width_at

    if not isinstance(config, TrainingConfig):
        config = TrainingConfig.from_dict(dict(config))
    dataset_row = _dataset(session, dataset, text_field)
    model = os.fspath(model)
    model_width_at(model, hook)  # an unknown model or hook is refused by name
    job = TrainingJob(
        model_name=model,
        hook_point=hook,
        dataset_id=dataset_row.id,
        tokens_planned=config.tokens,
        config={**config.to_dict(), "name": name},
    )
    if job_id is not None:
        job.id = job_id
    session.add(job)
    session.commit()
    session.refresh(job)
    return job


def _dataset(session: Session, dataset: str, text_field: str) -> Dataset:
    row = session.get(Dataset, dataset)
    if row is not None:
        return row
    if dataset.startswith("ds_"):
        raise NotFoundError(f"no dataset with id {dataset!r}; list datasets, or pass a corpus spec")
    return register_dataset(session, dataset, text_field=text_field)


def job_config(job: TrainingJob) -> tuple[TrainingConfig, str | None]:
    """The training settings and SAE name stored in a job row."""
    values = dict(job.config)
    name = values.pop("name", None)
    return TrainingConfig.from_dict(values), name


def run_training_job(job_id: str, *, engine: Engine | None = None) -> TrainingJob:
    """Run a queued training job to its end and return its row. A failure is recorded on
    the row (status failed, with the message) and raised; a cancellation is recorded and
    the row returned. Starts a local Ray (or joins ``RAY_ADDRESS``) unless Ray is up."""
    from saeray.db.engine import open_engine

    engine = engine or open_engine()
    with Session(engine, expire_on_commit=False) as session:
        job = get(session, TrainingJob, job_id)
        if job.status != JobStatus.QUEUED:
            raise ConflictError(
                f"training job {job_id} is {job.status}; only a queued job can run. "
                "Create a new one to train again"
            )
        config, name = job_config(job)
        dataset = get(session, Dataset, job.dataset_id)
        transition(session, job, JobStatus.LOADING)
        reporter = _ProgressReporter(engine, job_id)
        started = time.monotonic()
        try:
            with reporter:
                _ensure_ray()  # first: ray.init installs a SIGTERM handler of its own
                with on_sigterm(raise_cancelled):
                    result = _train(session, job, dataset, config, reporter)
                    reporter.stop()  # the final writes are the main thread's
                    _save(session, job, config, name, result)
        except BaseException as exc:
            # Ray's own SIGTERM handler (sys.exit) covers the moment before ours is in place.
            if isinstance(exc, JobCancelled) or (
                isinstance(exc, SystemExit) and exc.code == signal.SIGTERM
            ):
                record_ending(session, job, JobStatus.CANCELLED, "the job was stopped (SIGTERM)")
                return job
            log.exception("training %s failed", job_id)
            record_ending(session, job, JobStatus.FAILED, _failure_message(exc))
            raise
        finally:
            log.info("training %s ended %s after %.1f s", job_id, job.status,
                     time.monotonic() - started)  # fmt: skip
        return job


def _ensure_ray() -> None:
    import ray

    if not ray.is_initialized():
        ray.init()


def _train(
    session: Session,
    job: TrainingJob,
    dataset: Dataset,
    config: TrainingConfig,
    reporter: _ProgressReporter,
) -> TrainingResult:
    from saeray.training.fit import train_sae
    from saeray.training.stream import StreamConfig

    stream = StreamConfig(
        model=job.model_name,
        hook=job.hook_point,
        dataset=dataset.spec,
        text_field=dataset.text_field,
        context_length=config.context_length,
        windows_per_batch=config.windows_per_batch,
        heldout_fraction=config.heldout_fraction,
        threads_per_actor=config.threads_per_actor,
        seed=config.seed,
    )

    def report(progress: TrainingProgress) -> None:
        if job.status == JobStatus.LOADING:  # the first activations have arrived
            transition(session, job, JobStatus.TRAINING)
        reporter.update(progress)

    log.info("training %s: %s %s on %s, %s", job.id, job.model_name, job.hook_point,
             dataset.spec, config.to_dict())  # fmt: skip
    return train_sae(stream, config, report=report)


def _save(
    session: Session,
    job: TrainingJob,
    config: TrainingConfig,
    name: str | None,
    result: TrainingResult,
) -> SAE:
    """Write the SAE, register it, and complete the row; the row ends completed only once the
    SAE is registered."""
    metrics = result.metrics
    report_progress(  # 1.0 is for the completed row
        session, job, 0.99, tokens_processed=metrics["tokens_read"], metrics=dict(metrics)
    )
    transition(session, job, JobStatus.SAVING)
    meta = {"training_job_id": job.id, "training_config": config.to_dict(), **metrics}
    location = _write_sae(job, result, meta)
    sae = register_sae(
        session,
        location,
        name=name or f"topk {config.d_sae}x{config.k} {job.hook_point} ({job.id})",
        source=SAESource.TRAINED,
        model_name=job.model_name,
        hook_point=job.hook_point,
        meta={**meta, "artifact_uri": location},
    )
    job.sae_id = sae.id
    transition(session, job, JobStatus.COMPLETED)
    log.info("training %s completed: SAE %s at %s, held-out explained variance %s",
             job.id, sae.id, location, metrics.get("explained_variance_heldout"))  # fmt: skip
    return sae


def _write_sae(job: TrainingJob, result: TrainingResult, meta: dict[str, Any]) -> str:
    """Save in saeray's format under ``saes/<job id>`` of the artifact store; returns where
    it now lives (a local folder, or a store URI every node can load it from). A rerun of
    the same (requeued) job replaces its earlier folder."""
    from saeray.sae import save_sae
    from saeray.training.topk import to_inference_sae

    sae = to_inference_sae(result.trainer.sae, hook=job.hook_point, model_name=job.model_name)
    store = ArtifactStore()
    relpath = f"saes/{job.id}"
    store.delete_dir(relpath)
    if store.is_local:  # write in place
        save_sae(sae, Path(store.path(relpath)), metadata=meta)
        return store.address(relpath)
    with tempfile.TemporaryDirectory() as staging:
        save_sae(sae, Path(staging), metadata=meta)
        store.fs.create_dir(store.path(relpath), recursive=True)  # where folders are real
        pafs.copy_files(
            staging,
            store.path(relpath),
            source_filesystem=pafs.LocalFileSystem(),
            destination_filesystem=store.fs,
        )
    return store.address(relpath)


def _failure_message(exc: BaseException) -> str:
    """A user mistake's own message; else the exception's type and last line, which for an
    error Ray relays from an actor is the original error (the traceback goes to the log)."""
    if isinstance(exc, SaerayError):
        return str(exc)
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[-1] if lines else ''}".rstrip(": ")


class _ProgressReporter:
    """Writes the latest progress, tokens and metrics with a heartbeat every
    ``REPORT_INTERVAL_S`` from a background thread, whatever the driver is blocked on
    (Ray starting, actors loading the model), and logs them every ``LOG_INTERVAL_S``."""

    def __init__(self, engine: Engine, job_id: str) -> None:
        self.engine = engine
        self.job_id = job_id
        self._latest: TrainingProgress | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="saeray-train-progress", daemon=True)
        self._logged_at = 0.0

    def __enter__(self) -> _ProgressReporter:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop writing (before the job writes its final status, which must be the last)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def update(self, progress: TrainingProgress) -> None:
        self._latest = progress  # one reference swap: the thread reads whole snapshots

    def _run(self) -> None:
        with Session(self.engine, expire_on_commit=False) as session:
            while not self._stop.wait(REPORT_INTERVAL_S):
                try:
                    self._write(session)
                except Exception:  # a database hiccup must not kill the job; say so, go on
                    log.exception("could not record the progress of %s", self.job_id)
                    session.rollback()

    def _write(self, session: Session) -> None:
        job = session.get(TrainingJob, self.job_id, populate_existing=True)
        if job is None or is_terminal(job.status):
            return
        latest = self._latest
        if latest is None:  # still loading: a heartbeat only
            report_progress(session, job, job.progress)
            return
        report_progress(
            session,
            job,
            min(latest.progress, 0.99),  # 1.0 is for the completed row
            tokens_processed=latest.tokens_processed,
            metrics=latest.metrics,
        )
        now = time.monotonic()
        if now - self._logged_at >= LOG_INTERVAL_S:
            self._logged_at = now
            log.info("%s", _log_line(self.job_id, latest))


def _log_line(job_id: str, progress: TrainingProgress) -> str:
    m = progress.metrics
    parts = [
        f"training {job_id}",
        f"step {m.get('steps')}/{m.get('total_steps')}",
        f"tokens {progress.tokens_processed}",
    ]
    for key, label in (("loss", "loss"), ("explained_variance", "EV"), ("l0", "L0"),
                       ("dead_fraction", "dead"), ("tokens_per_second", "tok/s")):  # fmt: skip
        if key in m:
            parts.append(f"{label} {m[key]:.4g}")
    return "  ".join(parts)
