"""What a labeling job does: one typed config, stored flat in ``LabelingJob.config``.

Every field is documented here; the CLI flags and the HTTP API map onto these names.
Nothing in it is secret: provider keys come from the cluster's environment.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from saeray.errors import InvalidInputError

PROVIDERS = ("openai", "anthropic", "openai-compatible", "offline")
RESPONSE_FORMATS = ("json_schema", "json_object", "text")
# Keys the job writes next to the config fields when it is created (not user input).
RUN_KEYS = ("selection", "prices")
OFFLINE_MODEL = "top-tokens"


@dataclass(frozen=True)
class ProviderSpec:
    """One provider and model; ``base_url`` for OpenAI-compatible servers (vLLM, Ollama,
    llama.cpp) or a proxy. Written ``provider:model`` or ``provider:model@base_url``."""

    provider: str
    model: str
    base_url: str | None = None

    @classmethod
    def parse(cls, text: str) -> ProviderSpec:
        provider, colon, rest = text.strip().partition(":")
        model, _, base_url = rest.partition("@")
        if not colon or not model:
            raise InvalidInputError(
                f"fallback {text!r} is not provider:model; write e.g. 'anthropic:claude-3-5-haiku"
                "-latest' or 'openai-compatible:llama3@http://host:8000/v1'"
            )
        return cls(provider, model, base_url or None).validated()

    def validated(self) -> ProviderSpec:
        if self.provider not in PROVIDERS:
            raise InvalidInputError(
                f"unknown provider {self.provider!r}; use one of {', '.join(PROVIDERS)}"
            )
        if not self.model:
            raise InvalidInputError(
                f"provider {self.provider} needs a model name (--model), e.g. gpt-4o-mini"
            )
        if self.provider == "openai-compatible" and not self.base_url:
            raise InvalidInputError(
                "provider openai-compatible needs the server's base URL, e.g. "
                "--base-url http://localhost:8000/v1 (or model@URL in --fallback)"
            )
        return self

    @property
    def key(self) -> str:
        """Names this endpoint and model; the rate limiter keeps one budget per key."""
        return str(self)

    def __str__(self) -> str:
        return f"{self.provider}:{self.model}" + (f"@{self.base_url}" if self.base_url else "")


@dataclass(frozen=True)
class LabelingConfig:
    provider: str
    """openai | anthropic | openai-compatible | offline (no LLM: top tokens and contexts)."""
    model: str | None = None
    """Model name sent to the provider; required, except for offline (top-tokens)."""
    base_url: str | None = None
    """Server base URL: required for openai-compatible, optional for the others."""
    prompt_template_id: str | None = None
    """A row of prompt_templates; None uses the built-in default template."""
    only_unlabeled: bool = False
    """Label only features without an active label when the job is created."""
    features: str | None = None
    """Feature indices to label, e.g. ``0-999,1200``; None means all live features."""
    rpm: float | None = None
    """Requests per minute, shared by the whole pool (per provider of the chain)."""
    tpm: float | None = None
    """Tokens per minute (prompt estimate + max output, corrected by reported usage)."""
    concurrency: int = 16
    """Requests in flight at most, across the pool."""
    actors: int | None = None
    """Ray actors in the pool; None picks one per 32 of concurrency, at most 4."""
    fallback: tuple[ProviderSpec, ...] = ()
    """Providers tried in order for a feature once the primary has given up on it."""
    budget_usd: float | None = None
    """Stop cleanly as budget_exceeded once the job has spent this much."""
    confidence_threshold: float = 0.7
    """Labels with a lower confidence are flagged for human review."""
    max_attempts: int = 5
    """Requests per feature per provider, retries of 429/5xx/timeouts and the repair included."""
    request_timeout_s: float = 60.0
    """Seconds before a request is abandoned and retried."""
    backoff_base_s: float = 1.0
    """First retry delay; it doubles per retry, with jitter, up to backoff_max_s."""
    backoff_max_s: float = 30.0
    max_output_tokens: int = 256
    response_format: str | None = None
    """json_schema | json_object | text; None: json_schema for OpenAI, json_object for
    OpenAI-compatible servers; Anthropic is always asked in the prompt."""
    top_examples: int = 10
    """Max-activating examples shown in the prompt."""
    quantile_examples: int = 5
    """Examples from across the activation range shown in the prompt."""

    @property
    def primary(self) -> ProviderSpec:
        return ProviderSpec(self.provider, self.model or "", self.base_url)

    @property
    def chain(self) -> tuple[ProviderSpec, ...]:
        return (self.primary, *self.fallback)

    def validated(self) -> LabelingConfig:
        """This config completed (the offline model's name), or InvalidInputError naming
        the first bad field and its fix."""
        if self.model is None and self.provider == "offline":
            return replace(self, model=OFFLINE_MODEL).validated()
        for spec in self.chain:
            spec.validated()
        if self.fallback and self.provider == "offline":
            raise InvalidInputError("the offline labeler never gives up; drop --fallback")
        positive = {
            "rpm": self.rpm,
            "tpm": self.tpm,
            "budget_usd": self.budget_usd,
            "request_timeout_s": self.request_timeout_s,
            "actors": self.actors,
        }
        for name, value in positive.items():
            if value is not None and value <= 0:
                raise InvalidInputError(f"{name} must be positive, got {value}")
        for name in ("concurrency", "max_attempts", "max_output_tokens", "top_examples"):
            if getattr(self, name) < 1:
                raise InvalidInputError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.quantile_examples < 0 or self.backoff_base_s < 0 or self.backoff_max_s < 0:
            raise InvalidInputError("quantile_examples and backoff times cannot be negative")
        if not 0.0 <= self.confidence_threshold <= 1.0:
            raise InvalidInputError(
                f"confidence_threshold must lie in [0, 1], got {self.confidence_threshold}"
            )
        if self.response_format is not None and self.response_format not in RESPONSE_FORMATS:
            raise InvalidInputError(
                f"response_format {self.response_format!r} is unknown; use one of "
                f"{', '.join(RESPONSE_FORMATS)}"
            )
        if self.features is not None:
            from saeray.labeling.selection import parse_ranges

            parse_ranges(self.features)
        return self

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["fallback"] = [str(spec) for spec in self.fallback]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabelingConfig:
        """Read a config from JSON (a job row, an HTTP body); unknown keys are refused."""
        names = {field.name for field in fields(cls)}
        unknown = sorted(set(data) - names - set(RUN_KEYS))
        if unknown:
            raise InvalidInputError(
                f"unknown labeling config key(s) {', '.join(unknown)}; known: "
                f"{', '.join(sorted(names))}"
            )
        values = {key: value for key, value in data.items() if key in names}
        fallback = values.get("fallback") or ()
        if isinstance(fallback, str):
            fallback = [part for part in fallback.split(",") if part.strip()]
        values["fallback"] = tuple(
            spec if isinstance(spec, ProviderSpec) else ProviderSpec.parse(spec)
            for spec in fallback
        )
        try:
            config = cls(**values)
        except TypeError as exc:
            raise InvalidInputError(f"labeling config is incomplete: {exc}") from exc
        return config.validated()
