"""Extraction settings: what the CLI flags, the HTTP body and the job row's ``config`` hold."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from saeray.errors import InvalidInputError


@dataclass(frozen=True)
class ExtractionConfig:
    """Every setting of an extraction, with its default.

    What is read:
    - ``model``: the model (hub id or folder); default the SAE's ``model_name``.
    - ``hook``: the hook point (saeray, SAELens or module-path name); default the SAE's.
    - ``max_tokens``: stop after this many tokens (the first ones in corpus order); default
      the whole corpus.
    - ``context_length``: tokens per window, special tokens included.
    - ``include_special_tokens``: count BOS/CLS/SEP positions in statistics (default no:
      their activations are huge and unrelated to features).
    - ``dtype``: the model's dtype; default bfloat16 on GPU, float32 on CPU.

    What is kept per feature:
    - ``top_k``: max-activating windows.
    - ``n_quantiles`` x ``quantile_samples``: windows sampled across the activation range.
    - ``top_tokens``: tokens shown, by count and by mean activation.
    - ``tracked_tokens``: tokens counted per feature (exact below it; see tokens.py).
    - ``logit_effects``: promoted and suppressed tokens shown (when the model has an
      unembedding).

    How it runs:
    - ``batch_size``: windows per encoder call (activations are batch x context x d_sae).
    - ``num_actors``: encoder actors (one per GPU is the norm).
    - ``concurrent_batches``: batches each actor works on at once, in threads sharing its
      model: one batch's statistics (host-side, mostly one core) overlap another's forward
      pass, so the cores (or the GPU) do not wait on them.
    - ``gpus_per_actor``: default 1 when the cluster has GPUs, else 0.
    - ``cpus_per_actor``: CPUs reserved per actor.
    - ``torch_threads``: intra-op threads per batch; default the actor's CPUs shared among
      its concurrent batches (at least 1).
    - ``actor_resources``: custom Ray resources per actor, to pin actors to node types.
    - ``max_restarts``: times a dead actor is restarted (its batches are retried).
    """

    model: str | None = None
    hook: str | None = None
    max_tokens: int | None = None
    context_length: int = 128
    include_special_tokens: bool = False
    dtype: str | None = None
    top_k: int = 32
    n_quantiles: int = 5
    quantile_samples: int = 2
    top_tokens: int = 10
    tracked_tokens: int = 64
    logit_effects: int = 10
    batch_size: int = 64
    num_actors: int = 1
    concurrent_batches: int = 2
    gpus_per_actor: float | None = None
    cpus_per_actor: float = 1.0
    torch_threads: int | None = None
    actor_resources: dict[str, float] = field(default_factory=dict)
    max_restarts: int = 3

    def __post_init__(self) -> None:
        positive = (
            "context_length",
            "top_k",
            "n_quantiles",
            "quantile_samples",
            "top_tokens",
            "tracked_tokens",
            "batch_size",
            "num_actors",
            "concurrent_batches",
        )
        for name in positive:
            _check_int(name, getattr(self, name), minimum=1)
        for name in ("max_tokens", "torch_threads"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), minimum=1)
        _check_int("logit_effects", self.logit_effects, minimum=0)
        _check_int("max_restarts", self.max_restarts, minimum=0)
        if self.tracked_tokens < self.top_tokens:
            raise InvalidInputError(
                f"tracked_tokens ({self.tracked_tokens}) must be at least top_tokens "
                f"({self.top_tokens}): the tokens shown come from those tracked"
            )
        for name in ("gpus_per_actor", "cpus_per_actor"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not value >= 0):
                raise InvalidInputError(f"{name} must be a number >= 0, got {value!r}")
        if not isinstance(self.actor_resources, Mapping) or not all(
            isinstance(v, int | float) and v > 0 for v in self.actor_resources.values()
        ):
            raise InvalidInputError(
                "actor_resources must map resource names to positive amounts, e.g. "
                '{"accelerator_type:A100": 0.01}'
            )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> ExtractionConfig:
        """From a JSON object; unknown keys are refused, naming the known ones."""
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidInputError(
                f"unknown extraction setting(s) {', '.join(unknown)}; the settings are "
                f"{', '.join(sorted(known))}"
            )
        try:
            return cls(**values)
        except TypeError as exc:
            raise InvalidInputError(f"bad extraction settings: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def with_defaults(self, *, model: str | None, hook: str | None) -> ExtractionConfig:
        """The config with the model and hook filled in from the SAE where not given."""
        return replace(self, model=self.model or model, hook=self.hook or hook)


def _check_int(name: str, value: Any, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidInputError(f"{name} must be an integer >= {minimum}, got {value!r}")
