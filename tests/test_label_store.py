"""Labeling jobs and labels in the database, on SQLite and PostgreSQL: the queued row,
upserts that never duplicate, restart counts, active labels, manual labels, review,
comparison, deletion and the cost estimate."""

from __future__ import annotations

import json

import pytest
from sqlmodel import select

from saeray.artifacts import ArtifactStore
from saeray.db.engine import session_scope
from saeray.db.tables import Feature, FeatureLabel, LabelingJob
from saeray.errors import ConflictError, InvalidInputError, NotFoundError
from saeray.labeling import (
    LabelingConfig,
    activate_label,
    activate_labels,
    compare_labeling_jobs,
    create_labeling_job,
    delete_labeling_job,
    estimate_labeling_cost,
    flagged_labels,
    set_manual_label,
)
from saeray.labeling.items import LabelOutcome, OutcomeStatus, Usage
from saeray.labeling.pricing import PRICES_ENV
from saeray.labeling.store import JobRecorder
from saeray.lifecycle import JobStatus, transition
from tests.feature_fixtures import make_extraction

OFFLINE = LabelingConfig(provider="offline")


@pytest.fixture
def extraction(engine):
    with session_scope(engine) as session:
        return make_extraction(
            session, ArtifactStore(), features=20, dead=(3, 4), without_examples=(7,)
        )


def feature_ids(engine, extraction_id: str) -> dict[int, int]:
    with session_scope(engine) as session:
        rows = session.exec(
            select(Feature.index, Feature.id).where(Feature.extraction_id == extraction_id)
        )
        return dict(rows.all())


def labeled(feature_id: int, index: int, label: str, category: str, confidence: float, **kw):
    return LabelOutcome(
        feature_id,
        index,
        OutcomeStatus.LABELED,
        label=label,
        category=category,
        confidence=confidence,
        label_source="llm",
        provider="openai",
        model="m",
        usage=Usage(tokens_in=100, tokens_out=10, cost_usd=0.01, requests=1),
        **kw,
    )


def failed(feature_id: int, index: int) -> LabelOutcome:
    usage = Usage(tokens_in=50, tokens_out=5, cost_usd=0.005, requests=2)
    return LabelOutcome(feature_id, index, OutcomeStatus.FAILED, error="HTTP 500", usage=usage)


def record(engine, job_id: str, outcomes: list[LabelOutcome], threshold: float = 0.7) -> None:
    with session_scope(engine) as session:
        job = session.get(LabelingJob, job_id)
        recorder = JobRecorder(session, job, threshold)
        for outcome in outcomes:
            recorder.record(outcome)
        recorder.tick(force=True)


def test_a_job_is_a_queued_row_with_its_selection_frozen(engine, extraction):
    with session_scope(engine) as session:
        config = LabelingConfig("openai", "gpt-4o-mini", features="0-9", budget_usd=1.0)
        job = create_labeling_job(session, extraction.id, config)
    assert job.status == JobStatus.QUEUED and job.progress == 0.0
    assert job.features_total == 8  # 0-9 without the dead 3 and 4
    assert job.config["selection"] == [[0, 2], [5, 9]]
    assert job.config["prices"] == {
        "openai:gpt-4o-mini": {"input_per_mtok": 0.15, "output_per_mtok": 0.6}
    }
    assert (job.provider, job.model, job.budget_usd) == ("openai", "gpt-4o-mini", 1.0)
    assert LabelingConfig.from_dict(job.config).features == "0-9"


def test_only_unlabeled_skips_features_with_an_active_label(engine, extraction):
    ids = feature_ids(engine, extraction.id)
    with session_scope(engine) as session:
        set_manual_label(session, ids[0], "the word the")
        job = create_labeling_job(
            session, extraction.id, LabelingConfig(provider="offline", only_unlabeled=True)
        )
    assert job.features_total == 17 and job.config["selection"][0] == [1, 2]


def test_jobs_that_cannot_run_are_refused_at_the_door(engine, extraction, monkeypatch):
    monkeypatch.delenv(PRICES_ENV, raising=False)
    with session_scope(engine) as session:
        with pytest.raises(NotFoundError):
            create_labeling_job(session, "ext_nope", OFFLINE)
        with pytest.raises(NotFoundError, match="prompt template"):
            create_labeling_job(
                session, extraction.id, LabelingConfig("offline", prompt_template_id="tpl_x")
            )
        with pytest.raises(InvalidInputError, match="no live features in 3-4"):
            create_labeling_job(session, extraction.id, LabelingConfig("offline", features="3-4"))
        unpriced = LabelingConfig("openai", model="my-finetune", budget_usd=5)
        with pytest.raises(InvalidInputError, match="SAERAY_LABEL_PRICES"):
            create_labeling_job(session, extraction.id, unpriced)
        job = create_labeling_job(session, extraction.id, OFFLINE, job_id="lab_fixed")
        with pytest.raises(ConflictError, match="--job-id lab_fixed"):
            create_labeling_job(session, extraction.id, OFFLINE, job_id="lab_fixed")
        extraction.status = "extracting"
        session.add(extraction)
        session.commit()
        with pytest.raises(ConflictError, match="once it has completed"):
            create_labeling_job(session, extraction.id, OFFLINE)
    assert job.id == "lab_fixed"


def test_upserts_never_duplicate_and_restarts_count_from_the_rows(engine, extraction):
    ids = feature_ids(engine, extraction.id)
    with session_scope(engine) as session:
        job = create_labeling_job(session, extraction.id, LabelingConfig("openai", "gpt-4o-mini"))
    record(engine, job.id, [labeled(ids[0], 0, "the word the", "Language", 0.9), failed(ids[1], 1)])
    # A restart retries the failure; the retry replaces the row, tokens add up.
    record(engine, job.id, [labeled(ids[1], 1, "cats", "Animals", 0.5)])
    with session_scope(engine) as session:
        rows = session.exec(
            select(FeatureLabel).where(FeatureLabel.labeling_job_id == job.id)
        ).all()
        job = session.get(LabelingJob, job.id)
    assert sorted(r.feature_id for r in rows) == [ids[0], ids[1]]
    retried = next(r for r in rows if r.feature_id == ids[1])
    assert (retried.label, retried.error, retried.flagged) == ("cats", None, True)
    assert (retried.tokens_in, retried.tokens_out) == (150, 15)
    assert (job.features_labeled, job.features_failed) == (2, 0)
    assert (job.tokens_in, job.tokens_out) == (250, 25)
    assert job.cost_usd == pytest.approx(0.025)
    assert job.progress == pytest.approx(2 / 18) and job.heartbeat_at is not None


def test_active_labels_per_job_per_feature_and_by_hand(engine, extraction):
    ids = feature_ids(engine, extraction.id)
    with session_scope(engine) as session:
        first = create_labeling_job(session, extraction.id, OFFLINE)
        second = create_labeling_job(session, extraction.id, OFFLINE)
    record(engine, first.id, [labeled(ids[i], i, f"first {i}", "A", 0.9) for i in (0, 1, 2)])
    record(engine, second.id, [labeled(ids[i], i, f"second {i}", "A", 0.9) for i in (1, 2)])
    record(engine, second.id, [failed(ids[0], 0)])

    def shown() -> dict[int, str | None]:
        with session_scope(engine) as session:
            result = {}
            for index in (0, 1, 2):
                feature = session.get(Feature, ids[index])
                row = session.get(FeatureLabel, feature.active_label_id or -1)
                result[index] = row.label if row else None
            return result

    with session_scope(engine) as session:
        assert activate_labels(session, first.id) == 3
        assert activate_labels(session, second.id, only_unset=True) == 0
        assert activate_labels(session, second.id) == 2  # its failure does not replace a label
    assert shown() == {0: "first 0", 1: "second 1", 2: "second 2"}
    with session_scope(engine) as session:
        assert activate_labels(session, first.id, [ids[2]]) == 1
        manual = set_manual_label(session, ids[0], "  the   definite article ", "Language>Syntax")
        with pytest.raises(InvalidInputError):
            set_manual_label(session, ids[0], "   ")
    assert shown() == {0: "the definite article", 1: "second 1", 2: "first 2"}
    assert (manual.labeling_job_id, manual.label_source, manual.category) == (
        None,
        "user",
        "Language > Syntax",
    )
    with session_scope(engine) as session:
        failure = session.exec(
            select(FeatureLabel).where(FeatureLabel.label == None)  # noqa: E711
        ).one()
        with pytest.raises(ConflictError, match="failure record"):
            activate_label(session, failure.id)
        first_zero = session.exec(select(FeatureLabel).where(FeatureLabel.label == "first 0")).one()
        activate_label(session, first_zero.id)
    assert shown()[0] == "first 0"
    with session_scope(engine) as session:
        job = session.get(LabelingJob, first.id)
        with pytest.raises(ConflictError, match="cancel it before deleting"):
            delete_labeling_job(session, first.id)
        transition(session, job, JobStatus.CANCELLED)
        delete_labeling_job(session, first.id)
        assert session.get(LabelingJob, first.id) is None
    assert shown() == {0: None, 1: "second 1", 2: None}


def test_flagged_labels_are_the_unsure_ones_least_sure_first(engine, extraction):
    ids = feature_ids(engine, extraction.id)
    with session_scope(engine) as session:
        job = create_labeling_job(session, extraction.id, OFFLINE)
    confidences = {0: 0.9, 1: 0.3, 2: 0.69, 5: 0.7}
    record(engine, job.id, [labeled(ids[i], i, f"l{i}", "A", c) for i, c in confidences.items()])
    with session_scope(engine) as session:
        rows = flagged_labels(session, labeling_job_id=job.id)
        by_extraction = flagged_labels(session, extraction_id=extraction.id, limit=1)
        with pytest.raises(InvalidInputError):
            flagged_labels(session)
    assert [(r.label, r.confidence) for r in rows] == [("l1", 0.3), ("l2", 0.69)]
    assert [r.label for r in by_extraction] == ["l1"]


def test_two_jobs_compared(engine, extraction):
    ids = feature_ids(engine, extraction.id)
    with session_scope(engine) as session:
        a = create_labeling_job(session, extraction.id, OFFLINE)
        b = create_labeling_job(session, extraction.id, OFFLINE)
    record(engine, a.id, [
        labeled(ids[0], 0, "Closing parentheses", "Language > Syntax > Punctuation", 0.9),
        labeled(ids[1], 1, "the word cat", "Animals > Pets", 0.9),
        labeled(ids[2], 2, "numbers", "Numbers", 0.9),
        labeled(ids[5], 5, "only in a", "X", 0.9),
    ])  # fmt: skip
    record(engine, b.id, [
        labeled(ids[0], 0, "closing parentheses!", "language > syntax > punctuation", 0.8),
        labeled(ids[1], 1, "cat tokens", "Animals > Words", 0.8),
        labeled(ids[2], 2, "dates", "Time", 0.8),
    ])  # fmt: skip
    with session_scope(engine) as session:
        result = compare_labeling_jobs(session, a.id, b.id, limit=2)
    assert (result.features_compared, result.only_a, result.only_b) == (3, 1, 0)
    assert result.exact_agreement == pytest.approx(1 / 3)
    assert result.category_agreement == pytest.approx(1 / 3)
    assert result.top_category_agreement == pytest.approx(2 / 3)
    # "the word cat" vs "cat tokens": {word, cat} vs {cat, tokens} -> 1/3
    assert result.mean_word_overlap == pytest.approx((1 + 1 / 3 + 0) / 3)
    assert [row.feature_index for row in result.rows] == [2, 1]  # disagreements first
    assert json.dumps(result.rows[0].__dict__)  # plain data, ready for a response


def test_the_cost_estimate_comes_from_real_prompt_sizes(engine, extraction):
    config = LabelingConfig("openai", "gpt-4o-mini", top_examples=4, quantile_examples=2)
    with session_scope(engine) as session:
        estimate = estimate_labeling_cost(session, extraction.id, config, sample=5)
        bigger = estimate_labeling_cost(
            session, extraction.id, LabelingConfig("openai", "gpt-4o-mini"), sample=5
        )
        unpriced = estimate_labeling_cost(
            session, extraction.id, LabelingConfig("openai", "my-finetune"), sample=5
        )
    assert estimate.features == 18 and estimate.sampled == 5
    assert 300 * 18 < estimate.input_tokens < 2000 * 18
    assert bigger.input_tokens > estimate.input_tokens  # more examples, longer prompts
    assert estimate.usd == pytest.approx(
        (estimate.input_tokens * 0.15 + estimate.output_tokens * 0.6) / 1e6
    )
    assert unpriced.usd is None and unpriced.input_tokens == bigger.input_tokens


def test_a_requeued_job_keeps_its_rows(engine, extraction):
    ids = feature_ids(engine, extraction.id)
    with session_scope(engine) as session:
        job = create_labeling_job(session, extraction.id, OFFLINE)
    record(engine, job.id, [labeled(ids[0], 0, "x y", "A", 0.9)])
    with session_scope(engine) as session:
        job = session.get(LabelingJob, job.id)
        transition(session, job, JobStatus.FAILED, error="boom")
        transition(session, job, JobStatus.QUEUED)
        recorder = JobRecorder(session, job, 0.7)
        assert (recorder.job.features_labeled, recorder.done) == (1, 1)
