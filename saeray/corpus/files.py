"""Local corpus files: which files a spec names, how many documents each part holds, and
their documents.

A ``.txt`` file holds one document, or one per paragraph or line (``txt_unit``); a JSONL file
one per non-blank line; a Parquet file one per row, and one part per row group, so that a
large file can be read in parallel. Text is UTF-8. A document's id is
``<path relative to the corpus root>#<number in the file>``.
"""

from __future__ import annotations

import glob
import gzip
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import pyarrow as pa
import pyarrow.parquet as pq

from saeray import paths
from saeray.corpus.records import record_text
from saeray.corpus.spec import CorpusSpec, is_glob
from saeray.errors import InvalidInputError, NotFoundError

FORMATS = {
    ".txt": "txt",
    ".txt.gz": "txt",
    ".jsonl": "jsonl",
    ".jsonl.gz": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
}
_SUPPORTED = ", ".join(FORMATS)
_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r\f\v]*\n")


def file_format(path: Path) -> str | None:
    name = path.name.lower()
    return next((fmt for suffix, fmt in FORMATS.items() if name.endswith(suffix)), None)


def corpus_root(spec: CorpusSpec) -> Path:
    """The folder document ids are relative to (absolute, like the listed files, so that
    workers with another working folder read the same files)."""
    path = Path(spec.location).expanduser().absolute()
    if spec.kind == "glob":
        fixed = []
        for part in path.parts:
            if is_glob(part):
                break
            fixed.append(part)
        return Path(*fixed)
    return path if paths.is_dir(path) else path.parent


def list_files(spec: CorpusSpec) -> list[Path]:
    """The corpus files of a path or glob spec, in sorted order; errors for none or bad ones."""
    path = Path(spec.location).expanduser().absolute()
    root = corpus_root(spec)
    if spec.kind == "glob":
        files = [Path(m) for m in glob.glob(str(path), recursive=True) if Path(m).is_file()]
        if not files:
            raise InvalidInputError(
                f"empty corpus: {spec.location} matches no files. Fix: check the pattern."
            )
        for file in files:
            _check_format(file)
    elif paths.is_file(path):
        files = [_check_format(path)]
    elif paths.is_dir(path):
        files = [file for file in _walk(path) if file_format(file) is not None]
        if not files:
            raise InvalidInputError(
                f"empty corpus: folder {path} holds no corpus files ({_SUPPORTED}). "
                "Fix: point at a folder with such files."
            )
    else:
        raise NotFoundError(
            f"corpus path {path} does not exist. Fix: give an existing file ({_SUPPORTED}), "
            "folder or glob, or builtin:python-docs."
        )
    return sorted(files, key=lambda file: file.relative_to(root).as_posix())


def _walk(folder: Path) -> Iterator[Path]:
    for parent, subfolders, names in os.walk(folder):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        yield from (Path(parent) / name for name in names if not name.startswith("."))


def _check_format(path: Path) -> Path:
    if file_format(path) is None:
        raise InvalidInputError(
            f"{path} is not a corpus file type saeray reads ({_SUPPORTED}). "
            "Fix: convert it, or rename a plain-text file to .txt."
        )
    return path


def file_parts(path: Path, spec: CorpusSpec) -> list[int]:
    """How many documents each part of the file holds (one part, or one per row group)."""
    fmt = file_format(path)
    if fmt == "parquet":
        with _reading(path):
            parquet = pq.ParquetFile(path)
            _check_column(path, parquet.schema_arrow, spec.text_field)
            metadata = parquet.metadata
            return [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
    if fmt == "txt" and spec.txt_unit == "file":
        return [1]
    if fmt == "jsonl" or spec.txt_unit == "line":  # one per non-blank line, as _texts reads
        with _reading(path), _open_text(path) as stream:
            return [sum(1 for line in stream if line.strip())]
    return [sum(1 for _ in _texts(path, spec))]


def read_file_part(path: Path, part: int, spec: CorpusSpec) -> Iterator[tuple[str, str]]:
    """The (doc_id, text) pairs of one part of one file."""
    name = path.relative_to(corpus_root(spec)).as_posix()
    if file_format(path) == "parquet":
        with _reading(path):
            parquet = pq.ParquetFile(path)
            first = sum(parquet.metadata.row_group(i).num_rows for i in range(part))
            column = parquet.read_row_group(part, columns=[spec.text_field]).column(0)
        for number, text in enumerate(column.to_pylist(), start=first):
            yield f"{name}#{number}", text or ""
        return
    for number, text in enumerate(_texts(path, spec)):
        yield f"{name}#{number}", text


def _texts(path: Path, spec: CorpusSpec) -> Iterator[str]:
    with _reading(path), _open_text(path) as stream:
        if file_format(path) == "jsonl":
            for number, line in enumerate(stream, start=1):
                if line.strip():
                    yield record_text(
                        _json(line, path, number), spec.text_field, f"{path}:{number}"
                    )
        elif spec.txt_unit == "line":
            yield from (line.rstrip("\r\n") for line in stream if line.strip())
        elif spec.txt_unit == "paragraph":
            paragraphs = _PARAGRAPH_BREAK.split(stream.read())
            yield from (text.strip() for text in paragraphs if text.strip())
        else:
            yield stream.read()


def _open_text(path: Path) -> IO[str]:
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


def _json(line: str, path: Path, number: int) -> object:
    try:
        return json.loads(line)
    except json.JSONDecodeError as error:
        raise InvalidInputError(
            f"{path}:{number} is not valid JSON ({error.msg}, column {error.colno}). "
            "Fix: write one JSON object per line."
        ) from None


def _check_column(path: Path, schema: pa.Schema, field: str) -> None:
    if field not in schema.names:
        raise InvalidInputError(
            f"{path} has no column {field!r}; its columns are: {', '.join(schema.names)}. "
            "Fix: pass text_field=<the column that holds the text>."
        )
    kind = schema.field(field).type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise InvalidInputError(
            f"{path}: column {field!r} holds {kind}, not text. "
            "Fix: pass text_field=<a string column>."
        )


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Turn the ways a file can fail to read into one clear error naming it."""
    try:
        yield
    except UnicodeDecodeError as error:
        raise InvalidInputError(
            f"cannot read {path}: not UTF-8 text (byte {error.start}: {error.reason}). "
            "Fix: convert it to UTF-8, e.g. with iconv."
        ) from None
    except (OSError, EOFError, pa.ArrowException) as error:
        raise InvalidInputError(
            f"cannot read {path}: {error}. Fix: check that it is a readable, complete "
            f"{file_format(path) or 'corpus'} file."
        ) from None
