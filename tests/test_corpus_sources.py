"""Local files, folders, globs and HF datasets as documents; shards; bad input."""

from __future__ import annotations

import gzip
import json
import sys
import types
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from saeray.corpus import (
    Document,
    document_count,
    documents_to_batch,
    iter_documents,
    list_shards,
    parse_corpus_spec,
    read_shard,
    read_shards_batch,
)
from saeray.errors import InvalidInputError, NotFoundError


def _jsonl(path: Path, records: list[object]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def _parquet(path: Path, columns: dict[str, list], row_group_size: int = 2) -> Path:
    pq.write_table(pa.table(columns), path, row_group_size=row_group_size)
    return path


@pytest.fixture
def corpus(tmp_path) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "a.txt").write_text("First file.\n\nIts second paragraph.\n")
    _jsonl(folder / "sub" / "b.jsonl", [{"text": "json one"}, {"text": "json two", "id": 7}])
    with (folder / "sub" / "b.jsonl").open("a") as stream:
        stream.write("\n" + json.dumps({"text": None}) + "\n")  # a blank line, a null text
    _parquet(folder / "c.parquet", {"text": ["p0", "p1", "p2"], "n": [0, 1, 2]})
    (folder / ".hidden.txt").write_text("hidden")
    (folder / "notes.md").write_text("not a corpus file type")
    return folder


def _ids_and_texts(documents) -> list[tuple[str, str]]:
    return [(d.doc_id, d.text) for d in documents]


def test_a_folder_reads_every_corpus_file_in_path_order(corpus):
    documents = list(iter_documents(str(corpus)))
    assert _ids_and_texts(documents) == [
        ("a.txt#0", "First file.\n\nIts second paragraph.\n"),
        ("c.parquet#0", "p0"),
        ("c.parquet#1", "p1"),
        ("c.parquet#2", "p2"),
        ("sub/b.jsonl#0", "json one"),
        ("sub/b.jsonl#1", "json two"),
        ("sub/b.jsonl#2", ""),
    ]
    assert [d.index for d in documents] == list(range(7))
    assert document_count(str(corpus)) == 7
    assert list(iter_documents(str(corpus))) == documents  # deterministic


def test_shards_read_in_any_order_give_the_same_documents(corpus):
    shards = list_shards(str(corpus))
    # a.txt, two Parquet row groups, b.jsonl
    assert [(Path(s.source).name, s.part, s.first_index, s.count) for s in shards] == [
        ("a.txt", 0, 0, 1),
        ("c.parquet", 0, 1, 2),
        ("c.parquet", 1, 3, 1),
        ("b.jsonl", 0, 4, 3),
    ]
    scattered = [d for shard in reversed(shards) for d in read_shard(shard)]
    assert sorted(scattered, key=lambda d: d.index) == list(iter_documents(str(corpus)))


def test_globs_files_and_text_units(corpus):
    assert _ids_and_texts(iter_documents(f"{corpus}/**/*.jsonl"))[0] == (
        "sub/b.jsonl#0",
        "json one",
    )
    assert [d.doc_id for d in iter_documents(f"{corpus}/*.parquet")] == [
        "c.parquet#0",
        "c.parquet#1",
        "c.parquet#2",
    ]
    single = parse_corpus_spec(str(corpus / "a.txt"), txt_unit="paragraph")
    assert _ids_and_texts(iter_documents(single)) == [
        ("a.txt#0", "First file."),
        ("a.txt#1", "Its second paragraph."),
    ]
    lines = parse_corpus_spec(str(corpus / "a.txt"), txt_unit="line")
    assert [d.text for d in iter_documents(lines)] == ["First file.", "Its second paragraph."]
    assert document_count(lines) == 2


def test_text_field_and_gzip(tmp_path):
    path = tmp_path / "x.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as stream:
        stream.write(json.dumps({"body": "zipped é"}) + "\n")
    spec = parse_corpus_spec(str(path), text_field="body")
    assert _ids_and_texts(iter_documents(spec)) == [("x.jsonl.gz#0", "zipped é")]
    parquet = _parquet(tmp_path / "y.parquet", {"content": ["a", None]})
    assert [
        d.text for d in iter_documents(parse_corpus_spec(str(parquet), text_field="content"))
    ] == ["a", ""]


def test_shards_batch_to_documents_batch_for_ray_data(corpus):
    shards = list_shards(str(corpus))
    # ray.data.from_items(shards) hands them over in a column named "item"
    batch = read_shards_batch({"item": np.array(shards[1:3] + shards[:1], dtype=object)})
    assert batch["doc_index"].tolist() == [1, 2, 3, 0]
    assert batch["doc_id"].tolist() == ["c.parquet#0", "c.parquet#1", "c.parquet#2", "a.txt#0"]


def test_documents_as_columns_for_ray_data():
    batch = documents_to_batch([Document("x#0", "one", 4), Document("x#1", "two", 5)])
    assert batch["doc_index"].tolist() == [4, 5]
    assert batch["doc_id"].tolist() == ["x#0", "x#1"]
    assert batch["text"].tolist() == ["one", "two"]


@pytest.mark.parametrize(
    ("name", "content", "options", "message"),
    [
        ("x.jsonl", '{"body": "a"}\n', {}, r"x.jsonl:1 has no field 'text'; its fields are: body"),
        ("x.jsonl", '{"text": 3}\n', {}, r"field 'text' holds int, not text"),
        ("x.jsonl", '{"text": "a"}\n{"text": \n', {}, r"x.jsonl:2 is not valid JSON"),
        ("x.jsonl", '["text"]\n', {}, r"x.jsonl:1 is a JSON list, not an object"),
        ("x.txt", b"caf\xe9 latin-1", {}, r"not UTF-8 text \(byte 3"),
        ("x.jsonl.gz", b"not gzip at all", {}, r"cannot read .*x.jsonl.gz"),
        ("x.parquet", b"PAR1 broken", {}, r"cannot read .*x.parquet"),
        ("x.csv", "a,b\n", {}, r"x.csv is not a corpus file type"),
        ("x.jsonl", "", {}, r"empty corpus: .*x.jsonl holds no documents"),
    ],
)
def test_bad_files_are_clear_errors(tmp_path, name, content, options, message):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(InvalidInputError, match=message):
        list(iter_documents(parse_corpus_spec(str(path), **options)))


def test_bad_parquet_columns_are_clear_errors(tmp_path):
    path = _parquet(tmp_path / "x.parquet", {"body": ["a"], "n": [1]})
    with pytest.raises(InvalidInputError, match="no column 'text'; its columns are: body, n"):
        list_shards(str(path))
    with pytest.raises(InvalidInputError, match="column 'n' holds int64, not text"):
        list_shards(parse_corpus_spec(str(path), text_field="n"))


def test_missing_and_empty_corpora(tmp_path):
    with pytest.raises(NotFoundError, match="corpus path .*nowhere does not exist"):
        list(iter_documents(str(tmp_path / "nowhere")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError, match="empty corpus: folder .*empty holds no corpus"):
        list(iter_documents(str(tmp_path / "empty")))
    with pytest.raises(InvalidInputError, match=r"empty corpus: .*\*.txt matches no files"):
        list(iter_documents(str(tmp_path / "*.txt")))


def test_a_file_changed_after_listing_is_an_error(tmp_path):
    path = _jsonl(tmp_path / "x.jsonl", [{"text": "a"}, {"text": "b"}])
    shards = list_shards(str(path))
    _jsonl(path, [{"text": "a"}])
    with pytest.raises(InvalidInputError, match="changed while the corpus was read"):
        list(read_shard(shards[0]))


def test_hf_datasets_need_the_datasets_library(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(
        InvalidInputError, match="needs the `datasets` library.*pip install datasets"
    ):
        list(iter_documents("hf:org/name"))


def _fake_datasets(monkeypatch, load_dataset) -> None:
    """A stand-in `datasets` module: the real one is not installed and has no network here."""
    module = types.ModuleType("datasets")
    module.load_dataset = load_dataset
    monkeypatch.setitem(sys.modules, "datasets", module)


def test_hf_datasets_are_streamed_rows(monkeypatch):
    calls = []

    def load_dataset(name, config, *, split, streaming):
        calls.append((name, config, split, streaming))
        return iter([{"content": "row zero"}, {"content": "row one"}])

    _fake_datasets(monkeypatch, load_dataset)
    spec = parse_corpus_spec("hf:org/name:cfg:validation", text_field="content")
    assert list_shards(spec)[0].count is None and document_count(spec) is None
    assert _ids_and_texts(iter_documents(spec)) == [
        ("org/name:validation#0", "row zero"),
        ("org/name:validation#1", "row one"),
    ]
    assert calls == [("org/name", "cfg", "validation", True)]


def test_hf_datasets_that_cannot_be_opened_or_are_empty(monkeypatch):
    def unreachable(*_args, **_kwargs):
        raise ConnectionError("offline")

    _fake_datasets(monkeypatch, unreachable)
    with pytest.raises(NotFoundError, match="cannot open Hugging Face dataset hf:org/x:train"):
        list(iter_documents("hf:org/x"))
    _fake_datasets(monkeypatch, lambda *_args, **_kwargs: iter([]))
    with pytest.raises(
        InvalidInputError, match="empty corpus: hf:org/x:train yielded no documents"
    ):
        list(iter_documents("hf:org/x"))
    _fake_datasets(monkeypatch, lambda *_args, **_kwargs: iter([{"txt": "a"}]))
    with pytest.raises(InvalidInputError, match="row 0 has no field 'text'; its fields are: txt"):
        list(iter_documents("hf:org/x"))
