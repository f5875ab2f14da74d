"""The structured answer a labeler must give, and its validation.

The model is asked for ``{"label": 2-5 words, "category": "A > B > C", "confidence": 0-1}``.
A label of one to six words is accepted, so that a good one-word name ("Punctuation") or
a six-word one does not cost a repair request; anything else is an AnswerError, and the
caller asks once for a repair. A label is never invented from a broken answer.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

MIN_LABEL_WORDS, MAX_LABEL_WORDS = 1, 6
MAX_LABEL_CHARS = 80
MAX_CATEGORY_LEVELS = 5

ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "description": "2-5 word name of the feature"},
        "category": {
            "type": "string",
            "description": "path from general to specific, e.g. Language > Syntax > Punctuation",
        },
        "confidence": {"type": "number", "description": "0 to 1"},
    },
    "required": ["label", "category", "confidence"],
    "additionalProperties": False,
}

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)


def repair_request(problem: str) -> str:
    """The follow-up message that asks, once, for a usable answer."""
    return (
        f"That answer could not be used: {problem}. Reply again with only the JSON object "
        '{"label": ..., "category": ..., "confidence": ...} and nothing else.'
    )


class AnswerError(ValueError):
    """The answer cannot be used; the message says what is wrong, for the repair request."""


@dataclass(frozen=True)
class Answer:
    label: str
    category: str
    confidence: float


def parse_answer(text: str) -> Answer:
    """The validated answer in ``text`` (a JSON object, possibly fenced or wrapped in prose)."""
    data = _json_object(text)
    return Answer(
        label=_label(data.get("label")),
        category=normalise_category(data.get("category")),
        confidence=_confidence(data.get("confidence")),
    )


def _json_object(text: str) -> dict[str, Any]:
    candidates = [text.strip()]
    candidates += [match.strip() for match in _FENCE.findall(text)]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    for candidate in candidates:
        try:
            data = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict):
            return data
    raise AnswerError("the answer is not a JSON object")


def _label(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise AnswerError('"label" must be a non-empty string')
    label = " ".join(value.split())
    words = len(label.split(" "))
    if not MIN_LABEL_WORDS <= words <= MAX_LABEL_WORDS or len(label) > MAX_LABEL_CHARS:
        raise AnswerError(f'"label" must be 2-5 words (at most {MAX_LABEL_CHARS} characters)')
    return label


def normalise_category(value: Any) -> str:
    """``"language>syntax >  punctuation"`` -> ``"language > syntax > punctuation"``."""
    if not isinstance(value, str) or not value.strip():
        raise AnswerError('"category" must be a non-empty string like "Language > Syntax"')
    levels = [" ".join(level.split()) for level in value.split(">")]
    if any(not level for level in levels) or len(levels) > MAX_CATEGORY_LEVELS:
        raise AnswerError(
            f'"category" must be 1-{MAX_CATEGORY_LEVELS} non-empty levels joined by " > "'
        )
    return " > ".join(levels)


def _confidence(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AnswerError('"confidence" must be a number between 0 and 1')
    if not 0.0 <= float(value) <= 1.0:
        raise AnswerError(f'"confidence" must lie between 0 and 1, not {value}')
    return float(value)
