"""The flags of ``python -m jobs.label`` and ``saeray label ...`` (no Ray needed here)."""

from __future__ import annotations

import argparse
import json

import pytest
from sqlmodel import select

from saeray.artifacts import ArtifactStore
from saeray.cli.label import add_job_arguments, config_from_args, prepare_job, register
from saeray.db.engine import session_scope
from saeray.db.tables import Feature, LabelingJob
from saeray.errors import ConflictError, InvalidInputError, NotFoundError
from saeray.labeling.config import LabelingConfig, ProviderSpec
from tests.feature_fixtures import make_extraction

sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def job_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_job_arguments(parser)
    return parser.parse_args(argv)


def saeray_label(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["label", *argv])
    return args.func(args)


def test_every_flag_lands_in_the_config():
    args = job_args(
        "--extraction", "ext_1", "--provider", "openai-compatible", "--model", "llama3",
        "--base-url", "http://h:8000/v1", "--prompt-template", "tpl_1", "--only-unlabeled",
        "--features", "0-999", "--rpm", "600", "--tpm", "90000", "--concurrency", "32",
        "--fallback", "openai:gpt-4o-mini,anthropic:claude-3-5-haiku-latest",
        "--budget-usd", "2.5", "--response-format", "json_schema", "--max-attempts", "3",
    )  # fmt: skip
    assert config_from_args(args) == LabelingConfig(
        provider="openai-compatible",
        model="llama3",
        base_url="http://h:8000/v1",
        prompt_template_id="tpl_1",
        only_unlabeled=True,
        features="0-999",
        rpm=600,
        tpm=90000,
        concurrency=32,
        fallback=(
            ProviderSpec("openai", "gpt-4o-mini"),
            ProviderSpec("anthropic", "claude-3-5-haiku-latest"),
        ),
        budget_usd=2.5,
        response_format="json_schema",
        max_attempts=3,
    )
    assert config_from_args(job_args("--job-id", "lab_1")) is None
    with pytest.raises(InvalidInputError, match="--extraction and --provider"):
        config_from_args(job_args("--provider", "offline"))


@sqlite_only
def test_a_job_id_names_an_existing_row_or_the_new_one(engine, capsys):
    with session_scope(engine) as session:
        extraction = make_extraction(session, ArtifactStore(), features=6)
    new = ("--extraction", extraction.id, "--provider", "offline")
    assert prepare_job(job_args(*new, "--job-id", "lab_mine")) == "lab_mine"
    assert prepare_job(job_args("--job-id", "lab_mine")) == "lab_mine"
    with pytest.raises(ConflictError, match="pass --job-id lab_mine alone"):
        prepare_job(job_args(*new, "--job-id", "lab_mine"))
    with pytest.raises(NotFoundError, match="lab_other"):
        prepare_job(job_args("--job-id", "lab_other"))
    fresh = prepare_job(job_args(*new))
    with session_scope(engine) as session:
        assert session.get(LabelingJob, fresh).status == "queued"
        feature_id = session.exec(select(Feature.id).where(Feature.index == 2)).first()

    assert saeray_label("estimate", "--extraction", extraction.id, "--provider", "offline") == 0
    assert json.loads(capsys.readouterr().out)["features"] == 6
    assert saeray_label("set", str(feature_id), "the word sat", "--category", "Verbs") == 0
    assert "the word sat" in capsys.readouterr().out
    assert saeray_label("flagged", fresh) == 0
    assert saeray_label("compare", fresh, "lab_mine") == 0
    assert json.loads(capsys.readouterr().out)["features_compared"] == 0
