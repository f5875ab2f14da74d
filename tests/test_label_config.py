"""Labeling config validation, feature selections, and the price table."""

from __future__ import annotations

import json

import pytest

from saeray.errors import InvalidInputError
from saeray.labeling.config import LabelingConfig, ProviderSpec
from saeray.labeling.pricing import FREE, PRICES_ENV, Price, chain_prices, price_for, price_table
from saeray.labeling.selection import count, parse_ranges, ranges_of, within


def test_config_round_trips_through_json():
    config = LabelingConfig(
        provider="openai",
        model="gpt-4o-mini",
        rpm=500,
        fallback=(ProviderSpec.parse("openai-compatible:llama3@http://h:8000/v1"),),
        features="0-9,20",
    )
    again = LabelingConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    assert again.fallback[0] == ProviderSpec("openai-compatible", "llama3", "http://h:8000/v1")
    assert [str(spec) for spec in again.chain] == [
        "openai:gpt-4o-mini",
        "openai-compatible:llama3@http://h:8000/v1",
    ]


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"provider": "gemini", "model": "x"}, "unknown provider"),
        ({"provider": "openai-compatible", "model": "llama3"}, "base URL"),
        ({"provider": "openai", "model": "m", "rpm": 0}, "rpm must be positive"),
        ({"provider": "openai", "model": "m", "concurrency": 0}, "concurrency"),
        ({"provider": "openai", "model": "m", "confidence_threshold": 2}, "confidence_threshold"),
        ({"provider": "openai", "model": "m", "features": "5-2"}, "empty or negative"),
        ({"provider": "openai", "model": "m", "features": "a-b"}, "N or N-M"),
        ({"provider": "openai", "model": "m", "fallback": ["claude"]}, "provider:model"),
        ({"provider": "openai", "model": "m", "response_format": "xml"}, "response_format"),
        ({"provider": "openai", "model": "m", "api_key": "sk-..."}, "unknown labeling config"),
        ({"model": "m"}, "incomplete"),
        ({"provider": "openai"}, "needs a model name"),
    ],
)
def test_bad_configs_name_the_problem(data, words):
    with pytest.raises(InvalidInputError, match=words):
        LabelingConfig.from_dict(data)


def test_offline_needs_no_model_name():
    assert LabelingConfig(provider="offline").validated().model == "top-tokens"


def test_fallback_may_be_a_comma_separated_string():
    config = LabelingConfig.from_dict(
        {"provider": "openai", "model": "m", "fallback": "anthropic:claude-3-5-haiku, offline:x"}
    )
    assert [spec.provider for spec in config.fallback] == ["anthropic", "offline"]


def test_feature_ranges():
    assert parse_ranges("10-12, 0-3,4,20") == [[0, 4], [10, 12], [20, 20]]
    assert ranges_of([5, 1, 2, 3, 9, 2]) == [[1, 3], [5, 5], [9, 9]]
    assert count([[0, 4], [10, 12]]) == 8
    assert within([0, 4, 5, 9, 10, 13], [[0, 4], [10, 12]]) == [0, 4, 10]


def test_prices_match_dated_model_names_and_can_be_overridden(tmp_path):
    table = price_table({})
    assert price_for(ProviderSpec("openai", "gpt-4o-mini-2024-07-18"), table) == Price(0.15, 0.6)
    assert price_for(ProviderSpec("openai", "gpt-4o-2024-08-06"), table) == Price(2.5, 10.0)
    haiku = ProviderSpec("anthropic", "claude-3-5-haiku-latest")
    assert price_for(haiku, table) == Price(0.8, 4.0)
    assert price_for(ProviderSpec("openai", "my-finetune"), table) is None
    assert price_for(ProviderSpec("openai-compatible", "llama3", "http://h"), table) == FREE
    assert price_for(ProviderSpec("offline", "top-tokens"), table) == FREE

    override = {"my-finetune": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}}
    inline = price_table({PRICES_ENV: json.dumps(override)})
    assert price_for(ProviderSpec("openai", "my-finetune"), inline) == Price(1.0, 2.0)
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(override))
    assert price_table({PRICES_ENV: str(path)})["my-finetune"].cost(1_000_000, 500_000) == 2.0
    with pytest.raises(InvalidInputError, match=PRICES_ENV):
        price_table({PRICES_ENV: '{"m": {"input": 1}}'})
    with pytest.raises(InvalidInputError, match="cannot be read"):
        price_table({PRICES_ENV: str(tmp_path / "missing.json")})


def test_chain_prices_are_stored_by_provider_key():
    chain = (ProviderSpec("openai", "gpt-4o-mini"), ProviderSpec("openai", "unknown-model"))
    assert chain_prices(chain, price_table({})) == {
        "openai:gpt-4o-mini": {"input_per_mtok": 0.15, "output_per_mtok": 0.6},
        "openai:unknown-model": None,
    }
