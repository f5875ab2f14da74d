"""Prompts: a feature's evidence rendered through a template into a conversation.

Templates use ``$name`` placeholders (``string.Template``, so JSON braces need no escaping):
``$feature_index``, ``$statistics``, ``$top_tokens``, ``$top_examples``,
``$quantile_examples`` and ``$answer_format``. A custom template without
``$answer_format`` gets the answer instructions appended, so every prompt asks for the
same JSON. In examples the firing tokens are marked ``<<like this>>`` and activations are
shown on 0-10 (10 = the feature's strongest activation).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from string import Template

from sqlmodel import Session, select

from saeray.db.tables import PromptTemplate
from saeray.errors import ConflictError, InvalidInputError
from saeray.examples import Example
from saeray.labeling.evidence import FeatureEvidence
from saeray.labeling.items import Conversation, LabelItem

PLACEHOLDERS = frozenset(
    {"feature_index", "statistics", "top_tokens", "top_examples", "quantile_examples"}
    | {"answer_format"}
)
# Tokens kept around an example's strongest activation: most of the meaning is before it.
CONTEXT_BEFORE, CONTEXT_AFTER = 24, 8

ANSWER_FORMAT = (
    "Answer with one JSON object and nothing else:\n"
    '{"label": "<2-5 word name>", "category": "<general > more specific > most specific>", '
    '"confidence": <0 to 1>}\n'
    'For example: {"label": "closing parentheses", "category": "Language > Syntax > '
    'Punctuation", "confidence": 0.8}. Use a low confidence when the examples do not share '
    "a clear pattern."
)

DEFAULT_SYSTEM_PROMPT = (
    "You are an interpretability researcher naming the features of a sparse autoencoder "
    "trained on a language model's activations. Each feature fires on some tokens of some "
    "texts. From its top tokens, its strongest examples and examples from across its "
    "activation range, name the pattern it detects: precise, short, no filler words such "
    'as "feature" or "tokens related to".'
)

DEFAULT_USER_TEMPLATE = """Feature $feature_index

Statistics: $statistics

Top tokens (token: summed activation): $top_tokens

Max-activating examples (firing tokens marked <<like this>>, then each with its \
activation on 0-10):
$top_examples

Examples from across its activation range:
$quantile_examples

$answer_format"""


# --- templates ------------------------------------------------------------------------------


def validate_template(system_prompt: str, user_template: str) -> None:
    for name, text in (("system_prompt", system_prompt), ("user_template", user_template)):
        template = Template(text)
        if not template.is_valid():
            raise InvalidInputError(f"{name} has a stray '$'; write '$$' for a literal dollar sign")
        unknown = set(template.get_identifiers()) - PLACEHOLDERS
        if unknown:
            raise InvalidInputError(
                f"{name} uses unknown placeholder(s) {', '.join(sorted(unknown))}; "
                f"available: {', '.join('$' + p for p in sorted(PLACEHOLDERS))}"
            )
    if not user_template.strip():
        raise InvalidInputError("user_template is empty; start from the default template")


def create_prompt_template(
    session: Session, name: str, system_prompt: str, user_template: str
) -> PromptTemplate:
    """Store a custom template after checking its placeholders."""
    validate_template(system_prompt, user_template)
    if session.exec(select(PromptTemplate).where(PromptTemplate.name == name)).first():
        raise ConflictError(f"a prompt template named {name!r} exists; choose another name")
    row = PromptTemplate(name=name, system_prompt=system_prompt, user_template=user_template)
    session.add(row)
    session.commit()
    session.refresh(row)
    return row


# --- rendering ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PromptBuilder:
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    user_template: str = DEFAULT_USER_TEMPLATE
    top_examples: int = 10
    quantile_examples: int = 5

    @classmethod
    def from_template(
        cls, template: PromptTemplate | None, *, top_examples: int, quantile_examples: int
    ) -> PromptBuilder:
        if template is None:
            return cls(top_examples=top_examples, quantile_examples=quantile_examples)
        validate_template(template.system_prompt, template.user_template)
        return cls(template.system_prompt, template.user_template, top_examples, quantile_examples)

    def conversation(self, evidence: FeatureEvidence) -> Conversation:
        tops = [e for e in evidence.examples if e.kind == "top"][: self.top_examples]
        quantiles = _spread(
            [e for e in evidence.examples if e.kind != "top"], self.quantile_examples
        )
        values = {
            "feature_index": str(evidence.stats.index),
            "statistics": _statistics(evidence),
            "top_tokens": ", ".join(
                f"{json.dumps(token)}: {weight:.3g}" for token, weight in evidence.top_tokens()
            )
            or "(none recorded)",
            "top_examples": _examples(tops, evidence.scale),
            "quantile_examples": _examples(quantiles, evidence.scale),
            "answer_format": ANSWER_FORMAT,
        }
        user = Template(self.user_template).substitute(values)
        if "answer_format" not in Template(self.user_template).get_identifiers():
            user = f"{user.rstrip()}\n\n{ANSWER_FORMAT}"
        return Conversation(Template(self.system_prompt).substitute(values), (("user", user),))

    def item(self, evidence: FeatureEvidence) -> LabelItem:
        firing, preceding = _offline_evidence(evidence)
        return LabelItem(
            feature_id=evidence.stats.feature_id,
            feature_index=evidence.stats.index,
            conversation=self.conversation(evidence),
            firing_tokens=firing,
            preceding_tokens=preceding,
        )


def _spread(examples: list[Example], count: int) -> list[Example]:
    """``count`` examples evenly spread over the list (quantile bins, strongest first)."""
    if len(examples) <= count or count == 0:
        return examples[:count]
    step = len(examples) / count
    return [examples[int(i * step)] for i in range(count)]


def _statistics(evidence: FeatureEvidence) -> str:
    stats = evidence.stats
    return (
        f"fires on {stats.frequency * 100:.3g}% of tokens ({stats.firing_count} times); "
        f"activation max {stats.max_activation:.3g}, mean {stats.mean_activation:.3g}, "
        f"std {stats.std_activation:.3g}"
    )


def level(activation: float, scale: float) -> int:
    """An activation on 0-10 relative to ``scale``."""
    return max(0, min(10, round(10 * activation / scale)))


def _window(example: Example) -> range:
    if not example.activations:
        return range(0)
    peak = max(range(len(example.activations)), key=example.activations.__getitem__)
    return range(max(0, peak - CONTEXT_BEFORE), min(len(example.tokens), peak + CONTEXT_AFTER + 1))


def _examples(examples: list[Example], scale: float) -> str:
    if not examples:
        return "(none)"
    return "\n".join(
        f"{number}. {render_example(example, scale)}" for number, example in enumerate(examples, 1)
    )


def render_example(example: Example, scale: float) -> str:
    """The example's text around its peak with firing tokens marked, then the firing
    tokens with their 0-10 activations."""
    window = _window(example)
    tokens = [example.tokens[i] for i in window]
    levels = [level(example.activations[i], scale) for i in window]
    spaced = not any(t[:1].isspace() for t in tokens)  # wordpieces rather than byte-level BPE
    text, firing = "", []
    for token, value in zip(tokens, levels, strict=True):
        piece = token[2:] if spaced and token.startswith("##") else token
        stripped = piece.lstrip()
        if value >= 1:
            firing.append(f"{json.dumps(stripped)} {value}")
            piece = f"{piece[: len(piece) - len(stripped)]}<<{stripped}>>"
        joiner = " " if spaced and text and not token.startswith("##") else ""
        text += joiner + piece
    return f"{text.strip()}\n   firing: {', '.join(firing) or 'none'}"


def _offline_evidence(
    evidence: FeatureEvidence,
) -> tuple[tuple[tuple[str, float], ...], tuple[tuple[str, float], ...]]:
    firing: dict[str, float] = defaultdict(float)
    preceding: dict[str, float] = defaultdict(float)
    for example in evidence.examples:
        if example.kind != "top" or not example.activations:
            continue
        peak = max(range(len(example.activations)), key=example.activations.__getitem__)
        for token, activation in zip(example.tokens, example.activations, strict=False):
            if level(activation, evidence.scale) >= 1:
                firing[token.strip()] += level(activation, evidence.scale)
        if peak > 0:
            preceding[example.tokens[peak - 1].strip()] += level(
                example.activations[peak], evidence.scale
            )

    def ranked(tally: dict[str, float]) -> tuple[tuple[str, float], ...]:
        return tuple(sorted(tally.items(), key=lambda pair: (-pair[1], pair[0])))

    return ranked(firing), ranked(preceding)
