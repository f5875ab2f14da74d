"""Hugging Face datasets, streamed with the optional ``datasets`` library.

Streaming reads rows as they arrive, so neither the whole dataset nor its row count is
known beforehand (one shard, count unknown). It needs network, or a dataset already in the
``datasets`` cache; offline, copy the data to local Parquet or JSONL files instead.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from types import ModuleType

from saeray.corpus.records import record_text
from saeray.corpus.spec import CorpusSpec
from saeray.errors import InvalidInputError, NotFoundError


def _datasets_library(spec: CorpusSpec) -> ModuleType:
    try:
        return importlib.import_module("datasets")
    except ImportError:
        raise InvalidInputError(
            f"corpus {spec} needs the `datasets` library, which is not installed. Fix: "
            "pip install datasets into saeray's environment, or use local files or "
            "builtin:python-docs."
        ) from None


def read_hf_documents(spec: CorpusSpec) -> Iterator[tuple[str, str]]:
    """The (doc_id, text) pairs of the dataset split, in the dataset's order."""
    datasets = _datasets_library(spec)
    try:
        rows = datasets.load_dataset(
            spec.location, spec.config_name, split=spec.split, streaming=True
        )
    except Exception as error:  # the library raises many types; all mean "cannot open it"
        raise NotFoundError(
            f"cannot open Hugging Face dataset {spec} ({type(error).__name__}: {error}). "
            "Fix: check the name, config and split; offline, copy the data to local "
            "Parquet/JSONL files and pass their folder."
        ) from error
    for number, row in enumerate(rows):
        where = f"{spec} row {number}"
        yield f"{spec.location}:{spec.split}#{number}", record_text(row, spec.text_field, where)
