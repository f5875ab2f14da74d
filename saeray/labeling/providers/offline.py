"""A labeler that needs no LLM: a short label from the feature's firing tokens and what
precedes them, a coarse category from what those tokens look like, and a confidence that
is the share of the feature's activation the label accounts for. Its labels are marked
``offline`` in label_source, so no one mistakes them for a model's reading."""

from __future__ import annotations

import json
import unicodedata

from saeray.labeling.items import Conversation, LabelItem
from saeray.labeling.providers.base import Completion, Provider

DOMINANT_SHARE = 0.5  # one token (or one predecessor) this strong names the feature alone
MAX_TOKEN_CHARS = 16
OFFLINE_CERTAINTY = 0.9  # even a single-token feature is only read off its surface


class OfflineLabeler(Provider):
    label_source = "offline"

    async def complete(self, conversation: Conversation, item: LabelItem) -> Completion:
        return Completion(json.dumps(offline_answer(item)), 0, 0)


def offline_answer(item: LabelItem) -> dict:
    firing = [(_clean(token), weight) for token, weight in item.firing_tokens]
    firing = [(token, weight) for token, weight in firing if token]
    if not firing:
        return {"label": "no clear firing token", "category": "Unknown", "confidence": 0.0}
    total = sum(weight for _, weight in firing)
    top_token, top_weight = firing[0]
    if top_weight / total >= DOMINANT_SHARE:
        named, label = [top_token], f"{_quote(top_token)} token"
        preceding = [(_clean(t), w) for t, w in item.preceding_tokens if _clean(t)]
        before_total = sum(weight for _, weight in preceding)
        if preceding and preceding[0][1] / before_total >= DOMINANT_SHARE:
            label = f"{_quote(top_token)} after {_quote(preceding[0][0])}"
    else:
        named = [token for token, _ in firing[:3]]
        label = ", ".join(_quote(token) for token in named)
    share = sum(weight for token, weight in firing if token in named) / total
    return {
        "label": label,
        "category": _category(named),
        "confidence": round(OFFLINE_CERTAINTY * share, 3),
    }


def _clean(token: str) -> str:
    token = token.replace("Ġ", " ").replace("▁", " ").removeprefix("##").strip()
    return token[:MAX_TOKEN_CHARS]


def _quote(token: str) -> str:
    return json.dumps(token, ensure_ascii=False)


def _category(tokens: list[str]) -> str:
    def every(test) -> bool:  # noqa: ANN001 - a str predicate
        return all(test(token) for token in tokens)

    if every(lambda t: all(unicodedata.category(c).startswith("P") for c in t)):
        return "Language > Syntax > Punctuation"
    if every(lambda t: t.replace(".", "").replace(",", "").isdigit()):
        return "Language > Numbers"
    if every(lambda t: t.startswith("\\") or not t.strip()):
        return "Formatting > Whitespace"
    if every(lambda t: t[:1].isupper() and t.isalpha()):
        return "Language > Names and capitalised words"
    if every(lambda t: all(unicodedata.category(c).startswith("S") for c in t)):
        return "Language > Symbols"
    return "Language > Lexical > Specific tokens"
