"""Prompts from real example files: marked firing tokens, 0-10 activations, statistics,
custom templates; and the offline labeler reading the same evidence."""

from __future__ import annotations

import json

import pytest

from saeray.artifacts import ArtifactStore
from saeray.db.engine import session_scope
from saeray.errors import ConflictError, InvalidInputError
from saeray.examples import Example
from saeray.labeling.answer import parse_answer
from saeray.labeling.evidence import feature_stats, load_evidence
from saeray.labeling.prompt import PromptBuilder, create_prompt_template, render_example
from saeray.labeling.providers.offline import offline_answer
from tests.feature_fixtures import firing_token, make_extraction

# Prompts do not depend on the database: one backend is enough.
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def evidence(engine):
    with session_scope(engine) as session:
        extraction = make_extraction(session, ArtifactStore(), features=12)
        stats = feature_stats(session, extraction.id)
    return {e.stats.index: e for e in load_evidence(ArtifactStore(), extraction.id, stats)}


@sqlite_only
def test_the_default_prompt_shows_what_the_feature_does(evidence):
    feature = evidence[1]  # fires on " cat"
    conversation = PromptBuilder(top_examples=4, quantile_examples=2).conversation(feature)
    ((role, text),) = conversation.turns
    assert role == "user" and "interpretability" in conversation.system
    assert text.startswith("Feature 1\n")
    assert "fires on 0.2% of tokens (101 times)" in text
    assert 'Top tokens (token: summed activation): " cat":' in text
    top_part, quantile_part = text.split("Examples from across its activation range:")
    assert top_part.count(" <<cat>>") >= 4  # the firing token, marked, in every top example
    first_example = top_part.split("\n1. ")[1].split("\n2. ")[0]
    assert '"cat" 10' in first_example  # the strongest activation is 10
    assert '"cat" 9' in top_part  # weaker examples, relative to it
    assert first_example.count("<<") == 2 and '" 3' in first_example  # a weak co-firing token
    assert quantile_part.count("firing:") == 2
    assert '"label"' in text and '"confidence"' in text  # the answer format


@sqlite_only
def test_top_tokens_come_from_the_examples_when_the_extraction_has_none(evidence):
    feature = evidence[2]
    bare = type(feature)(
        type(feature.stats)(**{**feature.stats.__dict__, "top_tokens": {}}), feature.examples
    )
    assert bare.top_tokens()[0][0] == firing_token(2)


def test_wordpiece_tokens_are_joined_like_words():
    example = Example(
        feature_index=0,
        kind="top",
        rank=0,
        max_activation=4.0,
        doc_index=0,
        window_index=0,
        tokens=["the", "cat", "##s", "sat", "."],
        token_ids=[1, 2, 3, 4, 5],
        activations=[0.0, 0.0, 4.0, 1.0, 0.1],
    )
    assert render_example(example, 4.0) == 'the cat<<s>> <<sat>> .\n   firing: "s" 10, "sat" 2'


@sqlite_only
def test_custom_templates_are_checked_and_used(engine, evidence):
    with session_scope(engine) as session:
        with pytest.raises(InvalidInputError, match=r"unknown placeholder\(s\) examples"):
            create_prompt_template(session, "bad", "sys", "Feature $feature_index $examples")
        with pytest.raises(InvalidInputError, match="stray"):
            create_prompt_template(session, "bad", "costs $ 5", "Feature $feature_index")
        template = create_prompt_template(
            session, "terse", "Name feature $feature_index.", "Feature $feature_index: $top_tokens"
        )
        with pytest.raises(ConflictError, match="terse"):
            create_prompt_template(session, "terse", "x", "y")
    builder = PromptBuilder.from_template(template, top_examples=3, quantile_examples=0)
    conversation = builder.conversation(evidence[3])
    assert conversation.system == "Name feature 3."
    ((_, text),) = conversation.turns
    assert text.startswith('Feature 3: " on":')
    assert text.rstrip().endswith("a clear pattern.")  # answer format appended


@sqlite_only
@pytest.mark.parametrize(
    ("index", "category"),
    [(1, "Language > Lexical > Specific tokens"), (5, "Language > Syntax > Punctuation"),
     (8, "Language > Numbers"), (10, "Language > Names and capitalised words")],
)  # fmt: skip
def test_the_offline_labeler_names_the_firing_token(evidence, index, category):
    item = PromptBuilder().item(evidence[index])
    answer = parse_answer(json.dumps(offline_answer(item)))
    token = firing_token(index).strip()
    assert answer.label.startswith(f'"{token}"')
    assert answer.category == category
    assert 0.5 < answer.confidence < 0.9
