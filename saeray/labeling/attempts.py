"""Labeling one feature: retries, one repair, then the fallback chain.

For each provider of the chain, requests go through the shared gate (rate limits, pauses,
stop). A 429 pauses the gate for the whole pool for its Retry-After (or a backoff); 5xx,
timeouts and dropped connections back off exponentially with jitter; both are bounded by
``max_attempts``. A malformed or off-schema answer gets one repair request. When a
provider gives up, the next one in the chain gets the feature. Whatever happens, the
feature comes back as an outcome: labeled, failed with the reasons, or skipped because the
job stopped. Nothing here raises for one feature's trouble.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Protocol

from saeray.labeling.answer import Answer, AnswerError, parse_answer
from saeray.labeling.items import LabelItem, LabelOutcome, OutcomeStatus, Usage, estimate_tokens
from saeray.labeling.pricing import FREE, Price
from saeray.labeling.providers.base import (
    PermanentError,
    Provider,
    RateLimited,
    TransientError,
)


class Gate(Protocol):
    async def acquire(self, key: str, tokens: int) -> bool: ...
    async def pause(self, key: str, seconds: float) -> None: ...
    async def settle(self, key: str, reserved: int, used: int, cost_usd: float) -> None: ...
    async def rest(self, seconds: float) -> bool: ...


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    backoff_base_s: float = 1.0
    backoff_max_s: float = 30.0
    max_output_tokens: int = 256

    def backoff(self, retry: int, rng: random.Random) -> float:
        """Exponential with "equal jitter": half fixed, half random, capped."""
        delay = min(self.backoff_max_s, self.backoff_base_s * 2**retry)
        return delay / 2 + rng.uniform(0, delay / 2)


@dataclass(frozen=True)
class Accepted:
    answer: Answer
    raw_response: str


@dataclass(frozen=True)
class Failure:
    reason: str
    raw_response: str | None = None


class Stopped:
    """The gate closed: the job is stopping, send nothing more."""


async def label_item(
    item: LabelItem,
    chain: list[Provider],
    gate: Gate,
    policy: RetryPolicy,
    prices: dict[str, Price | None],
    rng: random.Random,
) -> LabelOutcome:
    usage = Usage()
    failures: list[str] = []
    raw: str | None = None
    for provider in chain:
        price = prices.get(provider.spec.key) or FREE
        verdict = await _ask(provider, item, gate, policy, price, usage, rng)
        if isinstance(verdict, Accepted):
            return LabelOutcome(
                item.feature_id,
                item.feature_index,
                OutcomeStatus.LABELED,
                label=verdict.answer.label,
                category=verdict.answer.category,
                confidence=verdict.answer.confidence,
                label_source=provider.label_source,
                provider=provider.spec.provider,
                model=provider.spec.model,
                raw_response=verdict.raw_response,
                usage=usage,
            )
        if isinstance(verdict, Stopped):
            return LabelOutcome(
                item.feature_id, item.feature_index, OutcomeStatus.SKIPPED, usage=usage
            )
        failures.append(f"{provider.spec}: {verdict.reason}")
        raw = verdict.raw_response or raw
    return LabelOutcome(
        item.feature_id,
        item.feature_index,
        OutcomeStatus.FAILED,
        raw_response=raw,
        error="; ".join(failures),
        usage=usage,
    )


async def _ask(
    provider: Provider,
    item: LabelItem,
    gate: Gate,
    policy: RetryPolicy,
    price: Price,
    usage: Usage,
    rng: random.Random,
) -> Accepted | Failure | Stopped:
    """One provider's tries at one feature."""
    key = provider.spec.key
    conversation = item.conversation
    repaired = False
    retries = 0
    last_problem = "no attempt made"
    for _ in range(policy.max_attempts):
        reserved = estimate_tokens(conversation.characters) + policy.max_output_tokens
        if not await gate.acquire(key, reserved):
            return Stopped()
        usage.requests += 1
        try:
            completion = await provider.complete(conversation, item)
        except RateLimited as exc:
            last_problem = str(exc)
            wait = exc.retry_after_s
            await gate.pause(key, policy.backoff(retries, rng) if wait is None else wait)
            retries += 1
            continue
        except TransientError as exc:
            last_problem = str(exc)
            if await gate.rest(policy.backoff(retries, rng)):
                return Stopped()
            retries += 1
            continue
        except PermanentError as exc:
            return Failure(str(exc))
        cost = price.cost(completion.tokens_in, completion.tokens_out)
        await gate.settle(key, reserved, completion.tokens_in + completion.tokens_out, cost)
        usage.tokens_in += completion.tokens_in
        usage.tokens_out += completion.tokens_out
        usage.cost_usd += cost
        try:
            return Accepted(parse_answer(completion.text), completion.text)
        except AnswerError as exc:
            if repaired:
                return Failure(f"invalid answer after one repair: {exc}", completion.text)
            repaired = True
            last_problem = f"invalid answer: {exc}"
            conversation = item.conversation.with_repair(completion.text, str(exc))
    return Failure(f"gave up after {policy.max_attempts} attempts; last: {last_problem}")
