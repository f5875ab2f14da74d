"""The structured answer: what is accepted, what is refused (and gets a repair)."""

from __future__ import annotations

import pytest

from saeray.labeling.answer import Answer, AnswerError, parse_answer, repair_request
from saeray.labeling.items import Conversation

GOOD = '{"label": "closing parentheses", "category": "Language > Syntax", "confidence": 0.8}'


@pytest.mark.parametrize(
    "text",
    [
        GOOD,
        f"```json\n{GOOD}\n```",
        f"Here is my answer:\n{GOOD}\nHope it helps.",
        '{"label": "  closing \\n parentheses ", "category": "language>syntax ", '
        '"confidence": 0.8}',
    ],
)
def test_valid_answers_in_any_wrapping(text):
    answer = parse_answer(text)
    assert answer.label == "closing parentheses"
    assert answer.category.lower() == "language > syntax"
    assert answer.confidence == 0.8


def test_integer_confidence_and_one_word_labels_are_accepted():
    answer = parse_answer('{"label": "Punctuation", "category": "Language", "confidence": 1}')
    assert answer == Answer("Punctuation", "Language", 1.0)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("Sure! The feature is about {label: tokens", "not a JSON object"),
        ('["closing parentheses"]', "not a JSON object"),
        ('{"name": "something", "score": 3}', '"label"'),
        ('{"label": "", "category": "A", "confidence": 0.5}', '"label"'),
        ('{"label": "one two three four five six seven", "category": "A", "confidence": 0.5}',
         "2-5 words"),
        ('{"label": "x y", "category": "A > > B", "confidence": 0.5}', '"category"'),
        ('{"label": "x y", "category": 7, "confidence": 0.5}', '"category"'),
        ('{"label": "x y", "category": "A", "confidence": 7}', "between 0 and 1"),
        ('{"label": "x y", "category": "A", "confidence": "high"}', "number"),
        ('{"label": "x y", "category": "A", "confidence": true}', "number"),
        ('{"label": "x y", "category": "A"}', '"confidence"'),
    ],
)  # fmt: skip
def test_broken_answers_are_refused_with_the_reason(text, problem):
    with pytest.raises(AnswerError, match=problem):
        parse_answer(text)


def test_the_repair_request_carries_the_bad_answer_and_the_problem():
    conversation = Conversation("system", (("user", "Feature 3 ..."),))
    repaired = conversation.with_repair("not json", "the answer is not a JSON object")
    assert repaired.turns[:2] == (("user", "Feature 3 ..."), ("assistant", "not json"))
    role, text = repaired.turns[2]
    assert role == "user" and text == repair_request("the answer is not a JSON object")
    assert "not a JSON object" in text and '"label"' in text
    assert conversation.turns == (("user", "Feature 3 ..."),)  # the original is untouched
