"""Schema, migrations and the refusal to run against a database that is behind."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from sqlalchemy import inspect
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from saeray.db.engine import open_engine
from saeray.db.migrate import SchemaBehindError, ensure_schema_current, head_revision, upgrade
from saeray.db.tables import (
    SAE,
    Dataset,
    ExtractionJob,
    Feature,
    FeatureLabel,
    LabelingJob,
)
from saeray.errors import SaerayError

TABLES = {
    "models",
    "saes",
    "datasets",
    "extraction_jobs",
    "features",
    "labeling_jobs",
    "feature_labels",
    "prompt_templates",
    "training_jobs",
}


def test_upgrade_creates_every_table_and_is_idempotent(database_url):
    engine = open_engine(database_url)
    assert set(inspect(engine).get_table_names()) >= TABLES
    assert upgrade(database_url) == (head_revision(), head_revision())
    ensure_schema_current(engine)


def test_browser_indexes_exist(database_url):
    inspector = inspect(open_engine(database_url))
    feature_indexes = {tuple(ix["column_names"]) for ix in inspector.get_indexes("features")}
    assert ("extraction_id", "frequency") in feature_indexes
    assert ("extraction_id", "max_activation") in feature_indexes
    label_indexes = {tuple(ix["column_names"]) for ix in inspector.get_indexes("feature_labels")}
    assert ("label",) in label_indexes


def test_no_column_can_hold_an_api_key(database_url):
    inspector = inspect(open_engine(database_url))
    for table in TABLES:
        for column in inspector.get_columns(table):
            assert "key" not in column["name"].lower(), (table, column["name"])
            assert "secret" not in column["name"].lower(), (table, column["name"])


def _feature(extraction_id: str) -> Feature:
    return Feature(
        extraction_id=extraction_id,
        index=0,
        name="feature_00000",
        frequency=0.1,
        firing_count=3,
        max_activation=2.0,
        mean_activation=1.0,
        std_activation=0.5,
    )


def _extraction_with_feature(session: Session) -> tuple[ExtractionJob, Feature]:
    sae = SAE(
        name="s", source="local", format="saelens", architecture="topk", path="/x", d_in=4, d_sae=8
    )
    dataset = Dataset(name="d", spec="builtin:python-docs")
    session.add_all([sae, dataset])
    session.flush()
    extraction = ExtractionJob(sae_id=sae.id, dataset_id=dataset.id)
    session.add(extraction)
    session.flush()
    feature = _feature(extraction.id)
    session.add(feature)
    session.commit()
    return extraction, feature


def test_feature_labels_unique_per_job_and_feature(database_url):
    with Session(open_engine(database_url)) as session:
        extraction, feature = _extraction_with_feature(session)
        job = LabelingJob(extraction_id=extraction.id, provider="offline", model="offline")
        session.add(job)
        session.commit()
        session.add(FeatureLabel(labeling_job_id=job.id, feature_id=feature.id, label="a"))
        session.commit()
        session.add(FeatureLabel(labeling_job_id=job.id, feature_id=feature.id, label="b"))
        with pytest.raises(IntegrityError):
            session.commit()
        session.rollback()
        # Manual labels have no job: a feature may collect any number of them (its history).
        for text in ("first", "second"):
            session.add(FeatureLabel(feature_id=feature.id, label=text, label_source="user"))
        session.commit()


def test_feature_unique_per_extraction_and_index(database_url):
    with Session(open_engine(database_url)) as session:
        extraction, feature = _extraction_with_feature(session)
        session.add(_feature(extraction.id))
        with pytest.raises(IntegrityError):
            session.commit()


def test_database_behind_head_is_refused(saeray_env, tmp_path):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    with pytest.raises(SchemaBehindError, match="run `saeray db upgrade`"):
        ensure_schema_current(open_engine(url))


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "saeray.cli", *args], capture_output=True, text=True, env=env
    )


def test_cli_upgrade_twice_then_current(saeray_env, tmp_path):

    env = {**os.environ, **saeray_env, "SAERAY_DATABASE_URL": f"sqlite:///{tmp_path / 'c.db'}"}
    first = _cli("db", "upgrade", env=env)
    assert first.returncode == 0 and "upgraded from empty" in first.stdout
    second = _cli("db", "upgrade", env=env)
    assert second.returncode == 0 and "already at head" in second.stdout
    assert _cli("db", "current", env=env).returncode == 0


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql+psycopg://postgres@127.0.0.1:1/nowhere", "cannot reach the database"),
        ("mysql://user@localhost/db", "dialect 'mysql' is not supported"),
        ("not a url", "is not a database URL"),
    ],
)
def test_cli_bad_database_url_is_one_clear_line(saeray_env, url, message):

    result = _cli("db", "upgrade", "--url", url, env={**os.environ, **saeray_env})
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_behind_database_exits_nonzero(saeray_env, tmp_path):

    env = {**os.environ, **saeray_env}
    result = _cli("db", "current", "--url", f"sqlite:///{tmp_path / 'old.db'}", env=env)
    assert result.returncode == 1 and "run `saeray db upgrade`" in result.stdout


def test_open_engine_rejects_unknown_dialect():
    with pytest.raises(SaerayError, match="not supported"):
        open_engine("oracle://scott@host/db")
