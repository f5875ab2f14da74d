"""What travels between the job's driver and the labeling pool: one item per feature out,
one outcome per feature back. Small, picklable, and free of secrets."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

from saeray.labeling.answer import repair_request

CHARS_PER_TOKEN = 4  # a tokenizer-free estimate, for budgets and rate limits
ANSWER_TOKENS = 40  # a typical JSON answer


def estimate_tokens(characters: int) -> int:
    return math.ceil(characters / CHARS_PER_TOKEN) + 8


class OutcomeStatus(StrEnum):
    LABELED = "labeled"
    FAILED = "failed"  # every provider gave up: recorded with its error, never a label
    SKIPPED = "skipped"  # the job stopped before the feature was answered: left missing


@dataclass(frozen=True)
class Conversation:
    """A system prompt and alternating user/assistant turns."""

    system: str
    turns: tuple[tuple[str, str], ...]

    def with_repair(self, bad_answer: str, problem: str) -> Conversation:
        return Conversation(
            self.system,
            (*self.turns, ("assistant", bad_answer), ("user", repair_request(problem))),
        )

    @property
    def characters(self) -> int:
        return len(self.system) + sum(len(text) for _, text in self.turns)


@dataclass(frozen=True)
class LabelItem:
    feature_id: int
    feature_index: int
    conversation: Conversation
    # For the offline labeler: firing tokens and the tokens just before the strongest
    # activations, each with its summed normalised activation, strongest first.
    firing_tokens: tuple[tuple[str, float], ...] = ()
    preceding_tokens: tuple[tuple[str, float], ...] = ()


@dataclass
class Usage:
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    requests: int = 0


@dataclass
class LabelOutcome:
    feature_id: int
    feature_index: int
    status: OutcomeStatus
    label: str | None = None
    category: str | None = None
    confidence: float | None = None
    label_source: str | None = None
    provider: str | None = None
    model: str | None = None
    raw_response: str | None = None
    error: str | None = None
    usage: Usage = field(default_factory=Usage)
