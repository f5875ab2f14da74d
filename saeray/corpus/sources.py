"""Documents of a corpus, in a deterministic order, whole or in shards.

A corpus is a list of shards (a file, a Parquet row group, a built-in source, a streamed
dataset), each knowing the global index of its first document, so documents keep the same
``index`` however the shards are spread over workers:

    shards = list_shards("builtin:python-docs")  # in the driver
    documents = ray.data.from_items(shards).map_batches(read_shards_batch, batch_size=1)
    windows = documents.map_batches(WindowTokenizer, fn_constructor_args=(path, config))

``iter_documents(spec)`` is all shards in order. Listing counts the documents of every
file (Parquet from its metadata; JSONL and line/paragraph text by one pass over the file).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from saeray.corpus.builtin import builtin_sources, read_builtin_source
from saeray.corpus.files import file_parts, list_files, read_file_part
from saeray.corpus.hf import read_hf_documents
from saeray.corpus.spec import CorpusSpec, parse_corpus_spec
from saeray.errors import InvalidInputError


@dataclass(frozen=True)
class Document:
    """One document: a stable id, its text, and its position in the corpus order."""

    doc_id: str
    text: str
    index: int = 0


@dataclass(frozen=True)
class CorpusShard:
    """A unit of reading: ``source`` is a file path, a built-in source or the dataset name;
    ``part`` a Parquet row group (else 0); ``count`` its number of documents (None when
    unknown: a streamed dataset)."""

    spec: CorpusSpec
    source: str
    part: int
    first_index: int
    count: int | None


def list_shards(spec: str | CorpusSpec) -> list[CorpusShard]:
    """The corpus's shards in order; an error for an empty corpus."""
    spec = parse_corpus_spec(spec)
    if spec.kind == "hf":
        return [CorpusShard(spec, spec.location, 0, 0, None)]
    if spec.kind == "builtin":
        units = [(source, 0, count) for source, count in builtin_sources(spec.location)]
    else:
        units = [
            (str(path), part, count)
            for path in list_files(spec)
            for part, count in enumerate(file_parts(path, spec))
        ]
    shards, first = [], 0
    for source, part, count in units:
        shards.append(CorpusShard(spec, source, part, first, count))
        first += count
    if first == 0:
        raise InvalidInputError(
            f"empty corpus: {spec} holds no documents. Fix: point at files with text in them."
        )
    return shards


def read_shard(shard: CorpusShard) -> Iterator[Document]:
    """The documents of one shard, with their global indices."""
    spec = shard.spec
    if spec.kind == "hf":
        pairs = read_hf_documents(spec)
    elif spec.kind == "builtin":
        pairs = read_builtin_source(shard.source)
    else:
        pairs = read_file_part(Path(shard.source), shard.part, spec)
    read = 0
    for read, (doc_id, text) in enumerate(pairs, start=1):
        yield Document(doc_id=doc_id, text=text, index=shard.first_index + read - 1)
    if shard.count is not None and read != shard.count:
        raise InvalidInputError(
            f"{shard.source} changed while the corpus was read ({shard.count} documents when "
            f"listed, {read} now). Fix: don't modify corpus files while a job reads them."
        )


def iter_documents(spec: str | CorpusSpec) -> Iterator[Document]:
    """Every document of the corpus, in its deterministic order."""
    spec = parse_corpus_spec(spec)
    empty = True
    for shard in list_shards(spec):
        for document in read_shard(shard):
            empty = False
            yield document
    if empty:
        raise InvalidInputError(f"empty corpus: {spec} yielded no documents. Fix: check it.")


def document_count(spec: str | CorpusSpec) -> int | None:
    """The number of documents, or None where it is not known before reading (streams)."""
    shards = list_shards(spec)
    if any(shard.count is None for shard in shards):
        return None
    return sum(shard.count for shard in shards)  # type: ignore[misc]


def read_shards_batch(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Ray Data ``map_batches`` function: shards (column ``item``, as
    ``ray.data.from_items(list_shards(spec))`` makes) to their documents, as columns."""
    return documents_to_batch(d for shard in batch["item"] for d in read_shard(shard))


def documents_to_batch(documents: Iterable[Document]) -> dict[str, np.ndarray]:
    """A batch of documents as columns, the form Ray Data's ``map_batches`` passes along."""
    documents = list(documents)
    return {
        "doc_index": np.array([d.index for d in documents], dtype=np.int64),
        "doc_id": np.array([d.doc_id for d in documents], dtype=object),
        "text": np.array([d.text for d in documents], dtype=object),
    }
