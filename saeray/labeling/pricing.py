"""What labeling costs: a price per million input and output tokens for each model.

Defaults are list prices of common OpenAI and Anthropic models (USD per million tokens,
as published when this was written; check them). Override or add models with
``SAERAY_LABEL_PRICES``: a path to a JSON file, or the JSON itself, shaped
``{"model-name": {"input_per_mtok": 0.15, "output_per_mtok": 0.6}}``. A model matches the
longest name that it equals or starts with followed by ``-`` (so ``gpt-4o-mini-2024-07-18``
is priced as ``gpt-4o-mini``). Self-hosted (openai-compatible) and offline labeling cost 0
unless priced.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from saeray.errors import InvalidInputError
from saeray.labeling.config import ProviderSpec

PRICES_ENV = "SAERAY_LABEL_PRICES"


@dataclass(frozen=True)
class Price:
    input_per_mtok: float
    output_per_mtok: float

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        return (tokens_in * self.input_per_mtok + tokens_out * self.output_per_mtok) / 1e6

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


FREE = Price(0.0, 0.0)

DEFAULT_PRICES: dict[str, Price] = {
    "gpt-4o": Price(2.50, 10.00),
    "gpt-4o-mini": Price(0.15, 0.60),
    "gpt-4.1": Price(2.00, 8.00),
    "gpt-4.1-mini": Price(0.40, 1.60),
    "gpt-4.1-nano": Price(0.10, 0.40),
    "gpt-5": Price(1.25, 10.00),
    "gpt-5-mini": Price(0.25, 2.00),
    "gpt-5-nano": Price(0.05, 0.40),
    "o3": Price(2.00, 8.00),
    "o3-mini": Price(1.10, 4.40),
    "o4-mini": Price(1.10, 4.40),
    "gpt-3.5-turbo": Price(0.50, 1.50),
    "claude-3-haiku": Price(0.25, 1.25),
    "claude-3-opus": Price(15.00, 75.00),
    "claude-3-5-haiku": Price(0.80, 4.00),
    "claude-3-5-sonnet": Price(3.00, 15.00),
    "claude-3-7-sonnet": Price(3.00, 15.00),
    "claude-haiku-4-5": Price(1.00, 5.00),
    "claude-sonnet-4": Price(3.00, 15.00),
    "claude-sonnet-4-5": Price(3.00, 15.00),
    "claude-opus-4": Price(15.00, 75.00),
    "claude-opus-4-1": Price(15.00, 75.00),
    "claude-opus-4-5": Price(5.00, 25.00),
}


def price_table(environ: dict[str, str] | None = None) -> dict[str, Price]:
    """The default prices with ``SAERAY_LABEL_PRICES`` laid over them."""
    env = os.environ if environ is None else environ
    table = dict(DEFAULT_PRICES)
    source = env.get(PRICES_ENV, "").strip()
    if not source:
        return table
    text = source if source.startswith("{") else _read(Path(source))
    try:
        overrides = json.loads(text)
        for model, price in overrides.items():
            table[model] = Price(float(price["input_per_mtok"]), float(price["output_per_mtok"]))
    except (json.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"{PRICES_ENV} is not a price table ({exc}); write "
            '{"model": {"input_per_mtok": 0.15, "output_per_mtok": 0.6}}'
        ) from exc
    return table


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise InvalidInputError(
            f"{PRICES_ENV} names {path}, which cannot be read ({exc.strerror}); "
            "give a JSON file's path or the JSON itself"
        ) from exc


def price_for(spec: ProviderSpec, table: dict[str, Price]) -> Price | None:
    """The price of ``spec``'s model, FREE for offline and unpriced self-hosted models,
    None when an OpenAI or Anthropic model is not in the table."""
    if spec.provider == "offline":
        return FREE
    matches = [name for name in table if spec.model == name or spec.model.startswith(name + "-")]
    if matches:
        return table[max(matches, key=len)]
    return FREE if spec.provider == "openai-compatible" else None


def chain_prices(
    chain: tuple[ProviderSpec, ...], table: dict[str, Price] | None = None
) -> dict[str, dict[str, float] | None]:
    """Prices of every provider of a chain, by its key, as stored in the job's config."""
    table = price_table() if table is None else table
    return {
        spec.key: (price.as_dict() if (price := price_for(spec, table)) else None) for spec in chain
    }
