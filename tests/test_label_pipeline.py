"""Labeling jobs end to end on a real local Ray (one cluster for the module), the real
SDKs against the fake server, SQLite and PostgreSQL: faults survived, rows and counters,
budget stop, fallback, two jobs at once, cancel and resume, kill -9 and resume, SIGTERM,
and no key anywhere in the database."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import ray
from sqlalchemy import func, text
from sqlmodel import SQLModel, select

from saeray.artifacts import ArtifactStore
from saeray.db.engine import session_scope
from saeray.db.tables import Feature, FeatureLabel, LabelingJob
from saeray.labeling import (
    LabelingConfig,
    ProviderSpec,
    compare_labeling_jobs,
    create_labeling_job,
    run_labeling_job,
)
from saeray.labeling.pricing import PRICES_ENV
from saeray.lifecycle import JobStatus
from tests.feature_fixtures import make_extraction
from tests.llm_server import LLMServer, default_answer

ROOT = Path(__file__).resolve().parents[1]
OPENAI_KEY = "sk-test-pipeline-7f3a9c2e5b1d"
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture(scope="module")
def ray_address():
    """One local Ray for the module. Workers inherit the environment Ray starts in: the
    OpenAI keys are there (as on a cluster; the fake server takes one key), the Anthropic
    key is not."""
    names = ("OPENAI_API_KEY", "SAERAY_OPENAI_COMPATIBLE_API_KEY", "ANTHROPIC_API_KEY")
    saved = {name: os.environ.get(name) for name in names}
    os.environ["OPENAI_API_KEY"] = os.environ["SAERAY_OPENAI_COMPATIBLE_API_KEY"] = OPENAI_KEY
    os.environ.pop("ANTHROPIC_API_KEY", None)
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def server():
    with LLMServer(api_key=OPENAI_KEY, latency_s=0.02, hang_s=3.0) as fake:
        yield fake


def extraction_of(engine, features: int = 24, **kwargs):
    with session_scope(engine) as session:
        return make_extraction(session, ArtifactStore(), features=features, **kwargs)


def openai_config(server: LLMServer, **overrides) -> LabelingConfig:
    settings = {
        "provider": "openai",
        "model": "gpt-4o-mini",
        "base_url": server.openai_base_url,
        "concurrency": 4,
        "actors": 1,
        "request_timeout_s": 0.5,
        "backoff_base_s": 0.05,
        "backoff_max_s": 0.2,
    }
    return LabelingConfig(**(settings | overrides))


def new_job(engine, extraction_id: str, config: LabelingConfig) -> str:
    with session_scope(engine) as session:
        return create_labeling_job(session, extraction_id, config).id


def rows_of(engine, job_id: str) -> list[FeatureLabel]:
    with session_scope(engine) as session:
        statement = select(FeatureLabel).where(FeatureLabel.labeling_job_id == job_id)
        return list(session.exec(statement))


def job_row(engine, job_id: str) -> LabelingJob:
    with session_scope(engine) as session:
        return session.get(LabelingJob, job_id)


def database_text(engine) -> str:
    """Every value of every table, as text."""
    with engine.connect() as connection:
        return "\n".join(
            str(row)
            for table in SQLModel.metadata.sorted_tables
            for row in connection.execute(text(f'SELECT * FROM "{table.name}"'))
        )


class HeartbeatWatch(threading.Thread):
    """Reads the job row every 0.1 s and keeps the longest the heartbeat was stale while
    the job was running."""

    def __init__(self, engine, job_id: str) -> None:
        super().__init__(daemon=True)
        self.engine, self.job_id = engine, job_id
        self.longest_silence = 0.0
        self.statuses: list[str] = []
        self.finished = threading.Event()

    def sample(self) -> None:
        job = job_row(self.engine, self.job_id)
        if job.status in (JobStatus.LOADING, JobStatus.LABELING) and job.heartbeat_at:
            silence = (datetime.now(UTC) - job.heartbeat_at).total_seconds()
            self.longest_silence = max(self.longest_silence, silence)
        if not self.statuses or self.statuses[-1] != job.status:
            self.statuses.append(job.status)

    def run(self) -> None:
        while not self.finished.is_set():
            self.sample()
            time.sleep(0.1)

    def stop(self) -> HeartbeatWatch:
        self.finished.set()
        self.join(5)
        self.sample()
        return self


def test_a_job_labels_every_feature_through_faults(ray_address, server, engine):
    extraction = extraction_of(engine, dead=(3,), without_examples=(7,))
    server.script(0, "429:0.3")
    server.script(1, "500")
    server.script(2, "timeout")
    server.script(4, "malformed")
    server.script(5, "wrong_schema", "wrong_schema")
    server.script(6, "400")
    job_id = new_job(engine, extraction.id, openai_config(server, rpm=900))
    watch = HeartbeatWatch(engine, job_id)
    watch.start()
    job = run_labeling_job(job_id)
    watch.stop()

    assert job.status == JobStatus.COMPLETED and job.progress == 1.0 and job.error is None
    assert watch.statuses == ["queued", "loading", "labeling", "completed"]
    assert watch.longest_silence <= 2.0
    rows = rows_of(engine, job_id)
    assert len(rows) == len({row.feature_id for row in rows}) == job.features_total == 23
    assert (job.features_labeled, job.features_failed) == (20, 3)
    errors = " | ".join(row.error for row in rows if row.error)
    assert "no examples" in errors and "invalid answer after one repair" in errors
    assert "HTTP 400" in errors
    assert all(row.raw_response and row.label for row in rows if row.error is None)
    labeled = [row for row in rows if row.label]
    assert all(row.label.startswith("tokens of kind") for row in labeled)
    assert all(row.label_source == "llm" and row.model == "gpt-4o-mini" for row in labeled)
    assert sum(row.flagged for row in rows) == sum(
        default_answer(int(row.label.split()[-1]), "")["confidence"] < 0.7 for row in labeled
    )
    assert job.tokens_in == sum(row.tokens_in for row in rows) > 0
    assert job.cost_usd == pytest.approx(sum(row.cost_usd for row in rows)) and job.cost_usd > 0
    assert {fmt["type"] for fmt in server.response_formats} == {"json_schema"}
    assert server.keys_seen == {OPENAI_KEY}  # the key reached the provider ...
    assert OPENAI_KEY not in database_text(engine)  # ... and nothing of it was stored
    with session_scope(engine) as session:
        active = session.exec(
            select(func.count()).where(
                Feature.extraction_id == extraction.id,
                Feature.active_label_id != None,  # noqa: E711
            )
        ).one()
    assert active == 20  # a first job's labels become the ones shown


@sqlite_only
def test_the_budget_stops_the_job_and_answers_in_flight_are_kept(
    ray_address, server, engine, monkeypatch
):
    prices = {"pricey-model": {"input_per_mtok": 2000, "output_per_mtok": 2000}}
    monkeypatch.setenv(PRICES_ENV, json.dumps(prices))
    extraction = extraction_of(engine, features=30)
    config = openai_config(server, model="pricey-model", budget_usd=5.0, concurrency=2)
    job = run_labeling_job(new_job(engine, extraction.id, config))

    assert job.status == JobStatus.BUDGET_EXCEEDED
    assert job.cost_usd >= 5.0 and 2 <= job.features_labeled < 30
    assert "budget of $5.0000 spent" in job.error and "--only-unlabeled" in job.error
    rows = rows_of(engine, job.id)
    assert len(rows) == job.features_labeled == server.completed  # every answer recorded
    assert server.received == server.completed  # and nothing asked after the stop
    # The gate closes as the crossing answer arrives: only requests already in flight
    # (concurrency 2) may add to the spend after it.
    assert job.cost_usd - 5.0 < 3 * max(row.cost_usd for row in rows)


@sqlite_only
def test_the_fallback_chain_takes_what_the_primary_gives_up(ray_address, server, engine):
    extraction = extraction_of(engine, features=8)
    server.script(1, "400")
    server.script(2, "500", "500", "500")
    server.script(3, "400", "400")
    backup = ProviderSpec("openai-compatible", "backup-model", server.openai_base_url)
    config = openai_config(server, max_attempts=3, fallback=(backup,))
    job = run_labeling_job(new_job(engine, extraction.id, config))

    assert job.status == JobStatus.COMPLETED
    assert (job.features_labeled, job.features_failed) == (7, 1)
    models = {row.label: (row.provider, row.model) for row in rows_of(engine, job.id) if row.label}
    assert (
        models["tokens of kind 1"]
        == models["tokens of kind 2"]
        == (
            "openai-compatible",
            "backup-model",
        )
    )
    assert models["tokens of kind 0"] == ("openai", "gpt-4o-mini")
    (lost,) = [row for row in rows_of(engine, job.id) if row.label is None]
    assert "openai:gpt-4o-mini" in lost.error and "openai-compatible:backup-model" in lost.error


def test_two_jobs_on_one_extraction_at_once(ray_address, engine):
    def answer(feature_index: int, model: str) -> dict:
        label = default_answer(feature_index, model)
        if model == "model-b" and feature_index % 2:
            label["label"] = f"another reading {feature_index}"
        return label

    with LLMServer(api_key=OPENAI_KEY, latency_s=0.02, answer=answer) as fake:
        extraction = extraction_of(engine, features=20)
        jobs = [
            new_job(engine, extraction.id, openai_config(fake, model=model))
            for model in ("model-a", "model-b")
        ]
        results: dict[str, LabelingJob] = {}
        threads = [
            threading.Thread(target=lambda j=j: results.setdefault(j, run_labeling_job(j)))
            for j in jobs
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)

    assert [results[j].status for j in jobs] == [JobStatus.COMPLETED] * 2
    assert [len(rows_of(engine, j)) for j in jobs] == [20, 20]
    assert {row.model for row in rows_of(engine, jobs[1])} == {"model-b"}
    with session_scope(engine) as session:
        comparison = compare_labeling_jobs(session, *jobs)
        shown = session.exec(
            select(FeatureLabel.labeling_job_id).join(
                Feature, Feature.active_label_id == FeatureLabel.id
            )
        ).all()
    assert comparison.features_compared == 20 and comparison.exact_agreement == 0.5
    assert len(shown) == 20 and set(shown) <= set(jobs)


@sqlite_only
def test_cancel_within_seconds_then_resume_labels_only_what_is_missing(ray_address, server, engine):
    extraction = extraction_of(engine, features=20)
    job_id = new_job(engine, extraction.id, openai_config(server, rpm=240))  # 4 per second
    stop = threading.Event()
    ended: list[LabelingJob] = []
    worker = threading.Thread(target=lambda: ended.append(run_labeling_job(job_id, stop=stop)))
    worker.start()
    while len(rows_of(engine, job_id)) < 4:
        time.sleep(0.1)
    stop.set()
    asked_at = time.monotonic()
    worker.join(30)
    assert time.monotonic() - asked_at < 4.0
    (job,) = ended
    assert job.status == JobStatus.CANCELLED and f"--job-id {job_id}" in job.error
    first_rows = rows_of(engine, job_id)
    assert 4 <= len(first_rows) == job.features_labeled < 20

    job = run_labeling_job(job_id)
    assert job.status == JobStatus.COMPLETED and job.error is None
    rows = rows_of(engine, job_id)
    assert len(rows) == len({row.feature_id for row in rows}) == 20
    before = {row.label for row in first_rows}
    assert all(server.calls(int(label.split()[-1])) == 1 for label in before)


@sqlite_only
def test_a_missing_key_fails_the_job_with_the_reason(ray_address, server, engine):
    extraction = extraction_of(engine, features=4)
    config = LabelingConfig(provider="anthropic", model="claude-3-5-haiku-latest")
    job = run_labeling_job(new_job(engine, extraction.id, config))
    assert job.status == JobStatus.FAILED
    assert "ANTHROPIC_API_KEY is not set in the environment of the Ray cluster" in job.error
    assert rows_of(engine, job.id) == [] and server.received == 0


@sqlite_only
def test_the_offline_labeler_needs_no_llm(ray_address, engine):
    extraction = extraction_of(engine, features=10, dead=(9,))
    job = run_labeling_job(new_job(engine, extraction.id, LabelingConfig(provider="offline")))
    assert job.status == JobStatus.COMPLETED and job.features_labeled == 9
    rows = rows_of(engine, job.id)
    assert {(row.label_source, row.provider, row.model) for row in rows} == {
        ("offline", "offline", "top-tokens")
    }
    assert job.cost_usd == 0 and job.tokens_in == 0
    assert any(row.label.startswith('"cat"') for row in rows)  # feature 1 fires on " cat"


# --- the job as a process: kill -9 and SIGTERM ------------------------------------------------


def start_job_process(ray_address: str, job_id: str) -> subprocess.Popen:
    env = os.environ | {"RAY_ADDRESS": ray_address, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "jobs.label", "--job-id", job_id],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_rows(engine, job_id: str, count: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 90
    while len(rows_of(engine, job_id)) < count:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the job process wrote no labels in 90 s"
        time.sleep(0.05)


def test_a_killed_job_resumes_under_its_id_without_duplicates(ray_address, server, engine):
    extraction = extraction_of(engine, features=30)
    job_id = new_job(engine, extraction.id, openai_config(server, rpm=300))  # 5 per second
    watch = HeartbeatWatch(engine, job_id)
    watch.start()
    process = start_job_process(ray_address, job_id)
    wait_for_rows(engine, job_id, 6, process)
    process.kill()  # SIGKILL: no chance to record anything more
    process.wait(10)
    watch.stop()
    assert watch.longest_silence <= 2.0
    before = {row.label for row in rows_of(engine, job_id)}
    assert 6 <= len(before) < 30 and job_row(engine, job_id).status == JobStatus.LABELING

    rerun = start_job_process(ray_address, job_id)
    out, err = rerun.communicate(timeout=180)
    assert rerun.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["status"] == "completed" and summary["labeled"] == 30
    rows = rows_of(engine, job_id)
    assert len(rows) == len({row.feature_id for row in rows}) == 30
    assert all(row.label for row in rows)
    assert all(server.calls(int(label.split()[-1])) == 1 for label in before)
    assert OPENAI_KEY not in out + err


@sqlite_only
def test_sigterm_cancels_the_job_within_seconds(ray_address, server, engine):
    extraction = extraction_of(engine, features=40)
    job_id = new_job(engine, extraction.id, openai_config(server, rpm=240))
    process = start_job_process(ray_address, job_id)
    wait_for_rows(engine, job_id, 3, process)
    process.send_signal(signal.SIGTERM)  # what `ray job stop` sends
    asked_at = time.monotonic()
    out, _ = process.communicate(timeout=30)
    assert time.monotonic() - asked_at < 3.0  # Ray's grace before SIGKILL is 3 s
    assert process.returncode == 143
    job = job_row(engine, job_id)
    assert job.status == JobStatus.CANCELLED and json.loads(out.splitlines()[-1])["status"] == (
        "cancelled"
    )
    assert len(rows_of(engine, job_id)) == job.features_labeled < 40
