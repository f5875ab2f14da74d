"""Providers through the real OpenAI and Anthropic SDKs against a local fake server, and
the per-feature attempt logic (retries, shared pauses, repair, fallback) on a plain gate.
"""

from __future__ import annotations

import asyncio
import random
import time
from email.utils import formatdate

import pytest

from saeray.labeling.attempts import RetryPolicy, label_item
from saeray.labeling.config import ProviderSpec
from saeray.labeling.items import Conversation, LabelItem, OutcomeStatus
from saeray.labeling.limiter import GateCore, Limits
from saeray.labeling.pricing import Price
from saeray.labeling.providers.base import (
    NO_KEY,
    PermanentError,
    ProviderSetupError,
    RateLimited,
    RequestOptions,
    TransientError,
    make_provider,
    redact,
    retry_after,
)
from tests.llm_server import LLMServer

OPENAI_KEY = "sk-test-openai-provider-0123456789"
ANTHROPIC_KEY = "sk-ant-test-provider-0123456789"
FAST = RetryPolicy(max_attempts=4, backoff_base_s=0.01, backoff_max_s=0.05)
OPTIONS = RequestOptions(timeout_s=0.5, max_output_tokens=100)


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    monkeypatch.delenv("SAERAY_OPENAI_COMPATIBLE_API_KEY", raising=False)
    with LLMServer(hang_s=3.0) as fake:
        yield fake


def spec(server: LLMServer, provider: str = "openai", model: str = "gpt-4o-mini") -> ProviderSpec:
    url = server.anthropic_base_url if provider == "anthropic" else server.openai_base_url
    return ProviderSpec(provider, model, url)


def item(index: int) -> LabelItem:
    text = f"Feature {index}\n\nMax-activating examples: the <<cat>> sat"
    return LabelItem(index + 100, index, Conversation("You name features.", (("user", text),)))


def complete(server: LLMServer, provider: str, index: int, **kwargs):
    chosen = make_provider(spec(server, provider, **kwargs), OPTIONS)
    return asyncio.run(chosen.complete(item(index).conversation, item(index)))


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_completion_with_usage_through_the_sdk(server, provider):
    completion = complete(server, provider, 7)
    assert '"tokens of kind 7"' in completion.text
    assert completion.tokens_in > 5 and completion.tokens_out > 5
    assert server.keys_seen == {OPENAI_KEY if provider == "openai" else ANTHROPIC_KEY}


def test_openai_asks_for_a_strict_json_schema_and_compatible_servers_for_json(server):
    complete(server, "openai", 1)
    complete(server, "openai-compatible", 2, model="llama3")
    strict, loose = server.response_formats
    assert strict["type"] == "json_schema" and strict["json_schema"]["strict"] is True
    assert strict["json_schema"]["schema"]["required"] == ["label", "category", "confidence"]
    assert loose == {"type": "json_object"}
    assert NO_KEY in server.keys_seen  # a self-hosted server needs no key
    assert server.models_seen == {"gpt-4o-mini", "llama3"}


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.parametrize(
    ("fault", "error", "words"),
    [
        ("429:0.3", RateLimited, "HTTP 429"),
        ("500", TransientError, "HTTP 500"),
        ("timeout", TransientError, "Timeout"),
        ("401", PermanentError, "HTTP 401"),
        ("400", PermanentError, "HTTP 400"),
    ],
)
def test_http_failures_map_to_what_retrying_needs(server, provider, fault, error, words):
    server.script(3, fault)
    with pytest.raises(error, match=words) as caught:
        complete(server, provider, 3)
    if error is RateLimited:
        assert caught.value.retry_after_s == pytest.approx(0.3)


def test_a_missing_key_names_the_variable(server, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    with pytest.raises(ProviderSetupError, match="ANTHROPIC_API_KEY is not set"):
        make_provider(spec(server, "anthropic"), OPTIONS)


def test_retry_after_headers_and_key_redaction(monkeypatch):
    assert retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after({"retry-after": "2"}) == 2.0
    assert 8 < retry_after({"retry-after": formatdate(time.time() + 10, usegmt=True)}) <= 10
    assert retry_after({}) is None
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    assert redact(f"Incorrect API key provided: {OPENAI_KEY}.") == (
        "Incorrect API key provided: [redacted]."
    )


# --- one feature's attempts ------------------------------------------------------------------


def label(server: LLMServer, *items: LabelItem, chain=None, gate=None, policy=FAST):
    providers = [make_provider(s, OPTIONS) for s in chain or [spec(server)]]
    prices = {"openai:gpt-4o-mini@" + server.openai_base_url: Price(0.15, 0.6)}
    gate = gate or GateCore()

    async def all_of() -> list:
        return await asyncio.gather(
            *(label_item(i, providers, gate, policy, prices, random.Random(0)) for i in items)
        )

    return asyncio.run(all_of())


def test_transient_failures_and_a_malformed_answer_are_survived(server):
    server.script(1, "500", "timeout", "malformed", "ok")
    (outcome,) = label(server, item(1))
    assert outcome.status == OutcomeStatus.LABELED
    assert outcome.label == "tokens of kind 1" and outcome.confidence == 0.9
    assert (outcome.provider, outcome.model, outcome.label_source) == (
        "openai",
        "gpt-4o-mini",
        "llm",
    )
    assert outcome.usage.requests == 4 and server.calls(1) == 4
    assert outcome.usage.tokens_in > 0 and outcome.usage.cost_usd > 0


def test_a_429_pauses_every_request_of_the_pool_for_its_retry_after(server):
    server.script(1, "429:0.5")
    gate = GateCore({spec(server).key: Limits(rpm=6000)})
    providers = [make_provider(spec(server), OPTIONS)]
    started = time.monotonic()

    async def one(index: int, delay: float) -> tuple:
        await asyncio.sleep(delay)
        outcome = await label_item(item(index), providers, gate, FAST, {}, random.Random(0))
        return outcome, time.monotonic() - started

    async def scenario() -> list:
        return await asyncio.gather(one(1, 0.0), one(2, 0.1))  # 2 asks after the 429

    (first, _), (second, second_done) = asyncio.run(scenario())
    assert first.status == second.status == OutcomeStatus.LABELED
    assert gate.pauses == 1
    assert second_done >= 0.5  # held by the pause, though its own request never failed
    assert server.calls(2) == 1


def test_an_answer_still_broken_after_one_repair_is_a_failure_not_a_label(server):
    server.script(1, "malformed", "wrong_schema")
    server.script(2, "wrong_schema", "ok")
    failed, repaired = label(server, item(1), item(2))
    assert failed.status == OutcomeStatus.FAILED and failed.label is None
    assert "invalid answer after one repair" in failed.error
    assert failed.raw_response == '{"name": "something", "score": 3}'
    assert server.calls(1) == 2  # one repair, then no more
    assert repaired.status == OutcomeStatus.LABELED and server.calls(2) == 2


def test_retries_are_bounded(server):
    server.script(1, *["500"] * 10)
    (outcome,) = label(server, item(1), policy=RetryPolicy(3, 0.01, 0.02))
    assert outcome.status == OutcomeStatus.FAILED
    assert "gave up after 3 attempts" in outcome.error and "HTTP 500" in outcome.error
    assert server.calls(1) == 3


def test_the_fallback_chain_takes_over_when_the_primary_gives_up(server):
    backup = ProviderSpec("openai-compatible", "backup", server.openai_base_url)
    server.script(1, "400")  # permanent for the primary, then the backup answers
    server.script(2, "400", "400")  # both give up
    rescued, lost, fine = label(server, item(1), item(2), item(3), chain=[spec(server), backup])
    assert (rescued.status, rescued.provider, rescued.model) == (
        OutcomeStatus.LABELED,
        "openai-compatible",
        "backup",
    )
    assert lost.status == OutcomeStatus.FAILED
    assert "openai:gpt-4o-mini" in lost.error and "openai-compatible:backup" in lost.error
    assert fine.model == "gpt-4o-mini"


def test_a_closed_gate_sends_nothing(server):
    gate = GateCore()
    asyncio.run(gate.close())
    (outcome,) = label(server, item(1), gate=gate)
    assert outcome.status == OutcomeStatus.SKIPPED and server.received == 0
