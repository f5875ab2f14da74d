"""A corpus named by one string, parsed into a typed :class:`CorpusSpec`.

Forms:

- ``builtin:python-docs`` (or ``builtin``), ``builtin:python-topics``: the built-in
  offline corpus (:mod:`saeray.corpus.builtin`);
- ``/path/file.jsonl``: one file: ``.txt``, ``.jsonl``/``.ndjson``, ``.parquet``
  (``.txt.gz``/``.jsonl.gz`` too);
- ``/path/dir``: every such file below the folder, recursively, in sorted path order
  (hidden files and folders left out);
- ``/path/*.txt``: a glob (``**`` matches folders recursively), files in sorted order;
- ``hf:org/name``, ``hf:org/name:split``, ``hf:org/name:config:split``: a Hugging Face
  dataset, streamed (split ``train`` by default).

Options beside the string: ``text_field`` (the JSONL field / Parquet column / dataset column
holding the text, default ``text``) and ``txt_unit`` (what a document is in a ``.txt``
file: the whole ``file``, each ``paragraph`` (blank-line separated) or each ``line``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Literal, get_args

from saeray.corpus.builtin import BUILTIN_CORPORA, DEFAULT_BUILTIN
from saeray.errors import InvalidInputError

CorpusKind = Literal["builtin", "path", "glob", "hf"]
TxtUnit = Literal["file", "paragraph", "line"]

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_GLOB_CHARS = ("*", "?", "[")


@dataclass(frozen=True)
class CorpusSpec:
    """A parsed corpus spec. ``location``: the builtin name, the path or glob pattern, or
    the dataset name. ``split`` and ``config_name`` apply to ``hf`` only."""

    kind: CorpusKind
    location: str
    text_field: str = "text"
    txt_unit: TxtUnit = "file"
    split: str = "train"
    config_name: str | None = None

    def __str__(self) -> str:
        if self.kind == "builtin":
            return f"builtin:{self.location}"
        if self.kind == "hf":
            config = f"{self.config_name}:" if self.config_name else ""
            return f"hf:{self.location}:{config}{self.split}"
        return self.location


def is_glob(text: str) -> bool:
    return any(char in text for char in _GLOB_CHARS)


def parse_corpus_spec(
    spec: str | CorpusSpec, *, text_field: str | None = None, txt_unit: TxtUnit | None = None
) -> CorpusSpec:
    """Parse a corpus string (a CorpusSpec passes through, with the options given applied)."""
    parsed = spec if isinstance(spec, CorpusSpec) else _parse(spec.strip())
    if text_field is not None:
        parsed = replace(parsed, text_field=text_field)
    if txt_unit is not None:
        parsed = replace(parsed, txt_unit=txt_unit)
    if not parsed.text_field:
        raise InvalidInputError("text_field is empty. Fix: name the field that holds the text.")
    if parsed.txt_unit not in get_args(TxtUnit):
        raise InvalidInputError(
            f"unknown txt_unit {parsed.txt_unit!r}. Fix: use one of {', '.join(get_args(TxtUnit))}."
        )
    return parsed


def _parse(text: str) -> CorpusSpec:
    if not text:
        raise InvalidInputError(
            "the corpus spec is empty. Fix: give builtin:python-docs, a .txt/.jsonl/.parquet "
            "file, a folder, a glob, or hf:org/name:split."
        )
    if text == "builtin" or text.startswith("builtin:"):
        name = text.partition(":")[2] or DEFAULT_BUILTIN
        if name not in BUILTIN_CORPORA:
            raise InvalidInputError(
                f"unknown built-in corpus {name!r}. Fix: use one of "
                f"{', '.join(f'builtin:{known}' for known in BUILTIN_CORPORA)}."
            )
        return CorpusSpec(kind="builtin", location=name)
    if text.startswith("hf:"):
        return _parse_hf(text)
    if _URL.match(text):
        raise InvalidInputError(
            f"corpus {text!r} is a URL; saeray reads local files and folders, the built-in "
            "corpus, and Hugging Face datasets. Fix: copy the data to a local folder, or use "
            "hf:org/name:split."
        )
    return CorpusSpec(kind="glob" if is_glob(text) else "path", location=text)


def _parse_hf(text: str) -> CorpusSpec:
    parts = text.removeprefix("hf:").split(":")
    if not parts[0] or len(parts) > 3 or not all(parts):
        raise InvalidInputError(
            f"cannot parse Hugging Face corpus {text!r}. Fix: write hf:org/name, "
            "hf:org/name:split or hf:org/name:config:split."
        )
    if len(parts) == 1:
        return CorpusSpec(kind="hf", location=parts[0])
    if len(parts) == 2:
        return CorpusSpec(kind="hf", location=parts[0], split=parts[1])
    return CorpusSpec(kind="hf", location=parts[0], config_name=parts[1], split=parts[2])
