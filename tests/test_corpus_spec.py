"""Corpus spec strings and their typed form."""

from __future__ import annotations

import pytest

from saeray.corpus import CorpusSpec, parse_corpus_spec
from saeray.errors import InvalidInputError


@pytest.mark.parametrize(
    ("text", "kind", "location", "split", "config_name"),
    [
        ("builtin:python-docs", "builtin", "python-docs", "train", None),
        ("builtin", "builtin", "python-docs", "train", None),
        ("builtin:python-topics", "builtin", "python-topics", "train", None),
        ("/data/file.jsonl", "path", "/data/file.jsonl", "train", None),
        ("/data/dir", "path", "/data/dir", "train", None),
        ("relative/dir/", "path", "relative/dir/", "train", None),
        ("/data/*.txt", "glob", "/data/*.txt", "train", None),
        ("/data/**/part-[0-9].parquet", "glob", "/data/**/part-[0-9].parquet", "train", None),
        ("hf:org/name", "hf", "org/name", "train", None),
        ("hf:org/name:validation", "hf", "org/name", "validation", None),
        ("hf:wikitext:wikitext-2-raw-v1:test", "hf", "wikitext", "test", "wikitext-2-raw-v1"),
    ],
)
def test_spec_forms(text, kind, location, split, config_name):
    spec = parse_corpus_spec(text)
    assert (spec.kind, spec.location, spec.split, spec.config_name) == (
        kind,
        location,
        split,
        config_name,
    )
    assert spec.text_field == "text" and spec.txt_unit == "file"
    assert parse_corpus_spec(str(spec)) == spec


def test_options_beside_the_string():
    spec = parse_corpus_spec("/data/x.jsonl", text_field="body", txt_unit="line")
    assert (spec.text_field, spec.txt_unit) == ("body", "line")
    assert parse_corpus_spec(spec, text_field="content").text_field == "content"
    assert parse_corpus_spec(CorpusSpec("builtin", "python-docs")) == CorpusSpec(
        "builtin", "python-docs"
    )


@pytest.mark.parametrize(
    ("text", "options", "message"),
    [
        ("", {}, "corpus spec is empty"),
        ("builtin:novels", {}, "unknown built-in corpus 'novels'.*builtin:python-docs"),
        ("hf:", {}, "cannot parse Hugging Face corpus"),
        ("hf:org/name::train", {}, "cannot parse Hugging Face corpus"),
        ("hf:a:b:c:d", {}, "hf:org/name:config:split"),
        ("s3://bucket/corpus", {}, "is a URL"),
        ("/data/x.jsonl", {"text_field": ""}, "text_field is empty"),
        ("/data/x.txt", {"txt_unit": "sentence"}, "unknown txt_unit 'sentence'"),
    ],
)
def test_bad_specs_are_clear_errors(text, options, message):
    with pytest.raises(InvalidInputError, match=message):
        parse_corpus_spec(text, **options)
