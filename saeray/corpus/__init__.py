"""Corpora: spec strings, document sources (files, folders, globs, HF datasets, a built-in
offline corpus) and tokenised windows with provenance."""

from saeray.corpus.sources import (
    CorpusShard,
    Document,
    document_count,
    documents_to_batch,
    iter_documents,
    list_shards,
    read_shard,
    read_shards_batch,
)
from saeray.corpus.spec import CorpusSpec, parse_corpus_spec
from saeray.corpus.windows import (
    WindowConfig,
    Windows,
    WindowTokenizer,
    iter_windows,
    special_layout,
)

__all__ = [
    "CorpusShard",
    "CorpusSpec",
    "Document",
    "WindowConfig",
    "WindowTokenizer",
    "Windows",
    "document_count",
    "documents_to_batch",
    "iter_documents",
    "iter_windows",
    "list_shards",
    "parse_corpus_spec",
    "read_shard",
    "read_shards_batch",
    "special_layout",
]
