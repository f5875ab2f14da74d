"""The text of one record (a JSONL object or a dataset row), checked."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from saeray.errors import InvalidInputError


def record_text(record: Any, field: str, where: str) -> str:
    """``record[field]`` as text; None counts as empty text. ``where`` names the record."""
    if not isinstance(record, Mapping):
        raise InvalidInputError(
            f"{where} is a JSON {type(record).__name__}, not an object. "
            f'Fix: write one object per line, e.g. {{"{field}": "..."}}.'
        )
    if field not in record:
        fields = ", ".join(map(str, record)) or "none"
        raise InvalidInputError(
            f"{where} has no field {field!r}; its fields are: {fields}. "
            "Fix: pass text_field=<the field that holds the text>."
        )
    text = record[field]
    if text is None:
        return ""
    if not isinstance(text, str):
        raise InvalidInputError(
            f"{where}: field {field!r} holds {type(text).__name__}, not text. "
            "Fix: pass text_field=<a field that holds strings>."
        )
    return text
