"""Labeling jobs and labels in the database.

A job is a row first (queued, with its config and its frozen feature selection), then
the work. Labels are upserted on (labeling job, feature) in small batches, in the same
transaction as the job's counters, so a job killed at any moment restarts from counts
that match its rows.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, select

from saeray.catalogue import get
from saeray.db.tables import (
    ExtractionJob,
    FeatureLabel,
    LabelingJob,
    LabelSource,
    PromptTemplate,
    utcnow,
)
from saeray.errors import ConflictError, InvalidInputError
from saeray.labeling.config import LabelingConfig
from saeray.labeling.items import LabelOutcome, OutcomeStatus
from saeray.labeling.pricing import chain_prices
from saeray.labeling.selection import count, select_features
from saeray.lifecycle import JobStatus, report_progress

FLUSH_EVERY_S = 0.5  # labels reach the database at most this late
HEARTBEAT_S = 1.0  # the row's heartbeat, progress and counters at most this far apart
FLUSH_ROWS = 200
LOG_EVERY_S = 10.0

log = logging.getLogger(__name__)


def create_labeling_job(
    session: Session, extraction_id: str, config: LabelingConfig, *, job_id: str | None = None
) -> LabelingJob:
    """Write the queued row of a new labeling job; nothing runs yet.

    The features to label are chosen now (``features``, ``only_unlabeled``, dead ones
    left out) and frozen into the row, and the prices of the provider chain recorded.
    """
    config = config.validated()
    extraction = get(session, ExtractionJob, extraction_id)
    if extraction.status != JobStatus.COMPLETED:
        raise ConflictError(
            f"extraction {extraction_id} is {extraction.status}; label it once it has completed"
        )
    if config.prompt_template_id is not None:
        get(session, PromptTemplate, config.prompt_template_id)
    if job_id is not None and session.get(LabelingJob, job_id) is not None:
        raise ConflictError(f"labeling job {job_id} exists; run it with --job-id {job_id} alone")
    selection = select_features(
        session, extraction_id, config.features, only_unlabeled=config.only_unlabeled
    )
    if not selection:
        raise InvalidInputError(
            f"extraction {extraction_id} has no live features"
            + (f" in {config.features}" if config.features else "")
            + (" without an active label" if config.only_unlabeled else "")
            + "; widen --features or drop --only-unlabeled"
        )
    prices = chain_prices(config.chain)
    unpriced = [key for key, price in prices.items() if price is None]
    if unpriced and config.budget_usd is not None:
        raise InvalidInputError(
            f"no price is known for {', '.join(unpriced)}, so a budget cannot be enforced; add "
            'it to SAERAY_LABEL_PRICES ({"model": {"input_per_mtok": ..., "output_per_mtok": '
            "...}}) or drop --budget-usd"
        )
    job = LabelingJob(
        extraction_id=extraction_id,
        provider=config.provider,
        model=config.model,
        base_url=config.base_url,
        prompt_template_id=config.prompt_template_id,
        budget_usd=config.budget_usd,
        features_total=count(selection),
        config={**config.to_dict(), "selection": selection, "prices": prices},
    )
    if job_id is not None:
        job.id = job_id
    session.add(job)
    session.commit()
    session.refresh(job)
    return job


def job_config(job: LabelingJob) -> LabelingConfig:
    return LabelingConfig.from_dict(job.config)


def labeled_feature_ids(session: Session, job_id: str) -> set[int]:
    statement = select(FeatureLabel.feature_id).where(
        FeatureLabel.labeling_job_id == job_id,
        FeatureLabel.label != None,  # noqa: E711 - SQL comparison
    )
    return set(session.exec(statement))


def label_counts(session: Session, job_id: str) -> tuple[int, int]:
    """(labeled, failed) rows of a job."""
    statement = (
        select(FeatureLabel.label != None, func.count())  # noqa: E711
        .where(FeatureLabel.labeling_job_id == job_id)
        .group_by(FeatureLabel.label != None)  # noqa: E711
    )
    counts = dict(session.exec(statement).all())
    return counts.get(True, 0), counts.get(False, 0)


def upsert_labels(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert label rows, or update the row a job already has for the feature (a retried
    failure); tokens and cost add up over a feature's tries. Not committed."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    statement = insert(FeatureLabel.__table__).values(rows)  # type: ignore[attr-defined]
    new = statement.excluded
    replaced = ("label", "category", "confidence", "label_source", "provider", "model")
    replaced += ("flagged", "raw_response", "error", "created_at")
    table = FeatureLabel.__table__.c  # type: ignore[attr-defined]
    statement = statement.on_conflict_do_update(
        index_elements=["labeling_job_id", "feature_id"],
        set_={name: new[name] for name in replaced}
        | {name: table[name] + new[name] for name in ("tokens_in", "tokens_out", "cost_usd")},
    )
    session.execute(statement)


def label_row(job: LabelingJob, outcome: LabelOutcome, threshold: float) -> dict[str, Any]:
    labeled = outcome.status == OutcomeStatus.LABELED
    return {
        "labeling_job_id": job.id,
        "feature_id": outcome.feature_id,
        "label": outcome.label if labeled else None,
        "category": outcome.category if labeled else None,
        "confidence": outcome.confidence if labeled else None,
        "label_source": outcome.label_source or label_source_of(job.provider),
        "provider": outcome.provider,
        "model": outcome.model,
        "flagged": labeled and outcome.confidence is not None and outcome.confidence < threshold,
        "scores": {},
        "raw_response": outcome.raw_response,
        "error": None if labeled else outcome.error,
        "tokens_in": outcome.usage.tokens_in,
        "tokens_out": outcome.usage.tokens_out,
        "cost_usd": outcome.usage.cost_usd,
        "created_at": utcnow(),
    }


def label_source_of(provider: str) -> LabelSource:
    return LabelSource.OFFLINE if provider == "offline" else LabelSource.LLM


class JobRecorder:
    """Owns a running job's row: buffers outcomes and writes them with the counters,
    progress and heartbeat, at most FLUSH_EVERY_S / HEARTBEAT_S apart."""

    def __init__(self, session: Session, job: LabelingJob, threshold: float) -> None:
        self.session = session
        self.job = job
        self.threshold = threshold
        self.failed_ids = set(
            session.exec(
                select(FeatureLabel.feature_id).where(
                    FeatureLabel.labeling_job_id == job.id,
                    FeatureLabel.label == None,  # noqa: E711
                )
            )
        )
        job.features_labeled, job.features_failed = label_counts(session, job.id)
        self.pending: list[dict[str, Any]] = []
        self.last_flush = self.last_beat = self.last_log = time.monotonic()

    @property
    def done(self) -> int:
        return self.job.features_labeled + self.job.features_failed

    def record(self, outcome: LabelOutcome) -> None:
        """Count a finished feature and queue its row; a skipped one only costs."""
        self._spend(outcome)
        if outcome.status == OutcomeStatus.SKIPPED:
            return
        if outcome.feature_id in self.failed_ids:  # a failure of an earlier run, retried
            self.failed_ids.discard(outcome.feature_id)
            self.job.features_failed -= 1
        if outcome.status == OutcomeStatus.LABELED:
            self.job.features_labeled += 1
        else:
            self.failed_ids.add(outcome.feature_id)
            self.job.features_failed += 1
        self.pending.append(label_row(self.job, outcome, self.threshold))

    def _spend(self, outcome: LabelOutcome) -> None:
        self.job.tokens_in += outcome.usage.tokens_in
        self.job.tokens_out += outcome.usage.tokens_out
        self.job.cost_usd += outcome.usage.cost_usd

    def tick(self, *, force: bool = False) -> None:
        """Write what is due: buffered labels, and the row's counters and heartbeat."""
        now = time.monotonic()
        labels_due = self.pending and (
            len(self.pending) >= FLUSH_ROWS or now - self.last_flush >= FLUSH_EVERY_S
        )
        if not (force or labels_due or now - self.last_beat >= HEARTBEAT_S):
            return
        upsert_labels(self.session, self.pending)
        self.pending = []
        total = max(self.job.features_total, 1)
        report_progress(self.session, self.job, min(1.0, self.done / total))  # commits both
        self.last_flush = self.last_beat = now
        if now - self.last_log >= LOG_EVERY_S:
            self.last_log = now
            log.info(
                "labeling job %s: %d labeled, %d failed of %d; $%.4f",
                self.job.id,
                self.job.features_labeled,
                self.job.features_failed,
                self.job.features_total,
                self.job.cost_usd,
            )
