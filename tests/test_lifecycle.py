"""The job state machine shared by every job kind."""

from __future__ import annotations

import pytest
from sqlmodel import Session

from saeray.db.engine import open_engine
from saeray.db.tables import SAE, Dataset, ExtractionJob, LabelingJob, TrainingJob
from saeray.errors import ConflictError, InvalidInputError
from saeray.lifecycle import JobStatus, allowed_next, report_progress, transition


@pytest.fixture
def session(database_url):
    with Session(open_engine(database_url), expire_on_commit=False) as session:
        yield session


@pytest.fixture
def extraction(session) -> ExtractionJob:
    sae = SAE(name="s", source="local", format="saelens", architecture="relu", path="/x",
              d_in=4, d_sae=8)  # fmt: skip
    dataset = Dataset(name="d", spec="builtin:python-docs")
    session.add_all([sae, dataset])
    session.commit()
    job = ExtractionJob(sae_id=sae.id, dataset_id=dataset.id)
    session.add(job)
    session.commit()
    return job


def test_extraction_runs_queued_to_completed(session, extraction):
    assert extraction.status == JobStatus.QUEUED and extraction.progress == 0
    for status in ("loading", "extracting", "saving", "completed"):
        transition(session, extraction, status)
    session.expire_all()
    stored = session.get(ExtractionJob, extraction.id)
    assert stored.status == "completed" and stored.progress == 1.0
    assert stored.started_at is not None and stored.finished_at >= stored.started_at
    with pytest.raises(ConflictError, match="it has ended"):
        transition(session, stored, "extracting")


@pytest.mark.parametrize("illegal", ["completed", "extracting", "budget_exceeded"])
def test_queued_job_cannot_skip_loading(session, extraction, illegal):
    with pytest.raises(ConflictError, match="cannot move to"):
        transition(session, extraction, illegal)
    assert extraction.status == "queued"


def test_budget_exceeded_only_for_labeling(session, extraction):
    transition(session, extraction, "loading")
    transition(session, extraction, "extracting")
    assert JobStatus.BUDGET_EXCEEDED not in allowed_next(extraction)
    labeling = LabelingJob(extraction_id=extraction.id, provider="openai", model="gpt-4o-mini")
    session.add(labeling)
    session.commit()
    transition(session, labeling, "loading")
    transition(session, labeling, "labeling")
    transition(session, labeling, "budget_exceeded")
    assert labeling.finished_at is not None and labeling.progress < 1.0


def test_failed_job_keeps_error_and_may_be_requeued(session, extraction):
    transition(session, extraction, "loading")
    transition(session, extraction, "failed", error="CUDA out of memory")
    assert extraction.error == "CUDA out of memory"
    transition(session, extraction, "queued")
    assert extraction.error is None and extraction.started_at is None


def test_completed_job_is_not_requeued(session, extraction):
    for status in ("loading", "extracting", "completed"):
        transition(session, extraction, status)
    with pytest.raises(ConflictError):
        transition(session, extraction, "queued")


def test_unknown_status_is_refused(session, extraction):
    with pytest.raises(ValueError):
        transition(session, extraction, "paused")


def test_progress_is_bounded_and_beats(session, extraction):
    transition(session, extraction, "loading")
    before = extraction.heartbeat_at
    report_progress(session, extraction, 0.25, tokens_processed=1000, tokens_per_second=50.0)
    session.expire_all()
    stored = session.get(ExtractionJob, extraction.id)
    assert stored.progress == 0.25 and stored.tokens_processed == 1000
    assert stored.heartbeat_at >= before
    for bad in (-0.1, 1.5):
        with pytest.raises(InvalidInputError, match=r"\[0, 1\]"):
            report_progress(session, stored, bad)


def test_training_job_phases(session, extraction):
    job = TrainingJob(model_name="m", hook_point="blocks.0.hook_resid_post",
                      dataset_id=extraction.dataset_id)  # fmt: skip
    session.add(job)
    session.commit()
    transition(session, job, "loading")
    with pytest.raises(ConflictError):
        transition(session, job, "extracting")
    transition(session, job, "training")
    transition(session, job, "saving")
    transition(session, job, "completed")
