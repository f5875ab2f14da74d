"""One interface for every labeler (strategy): an LLM behind an SDK, or the offline one.

A provider answers a conversation with a Completion or raises one of three errors, which
is all the retry logic needs to know: RateLimited (pause everyone, then retry),
TransientError (back off, then retry) and PermanentError (give this provider up for this
feature). SDK retries are switched off: retries belong to the pool, which shares them
with the rate limiter.

Keys are read here, from the environment of the process that talks to the provider (a
Ray actor on the cluster), and are scrubbed from every message that leaves it.
"""

from __future__ import annotations

import os
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from saeray.errors import SaerayError
from saeray.labeling.config import ProviderSpec
from saeray.labeling.items import Conversation, LabelItem

API_KEY_ENV = {
    "openai": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "openai-compatible": "SAERAY_OPENAI_COMPATIBLE_API_KEY",
}
# Sent when a self-hosted server needs no key (the SDK insists on one); not a secret.
NO_KEY = "not-needed"


class ProviderSetupError(SaerayError):
    """A provider cannot be used at all (no key in the environment, SDK missing)."""


class ProviderError(Exception):
    """A request failed; the message is safe to store (no key in it)."""

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))


class RateLimited(ProviderError):
    def __init__(self, message: str, retry_after_s: float | None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class TransientError(ProviderError):
    """5xx, timeouts, dropped connections: worth retrying after a pause."""


class PermanentError(ProviderError):
    """4xx other than 429 (bad request, bad key, unknown model): retrying will not help."""


@dataclass(frozen=True)
class Completion:
    text: str
    tokens_in: int
    tokens_out: int


@dataclass(frozen=True)
class RequestOptions:
    timeout_s: float = 60.0
    max_output_tokens: int = 256
    response_format: str | None = None


class Provider(ABC):
    # A LabelSource value; a plain string, so that labelers need not import the tables.
    label_source: str = "llm"

    def __init__(self, spec: ProviderSpec, options: RequestOptions) -> None:
        self.spec = spec
        self.options = options

    @abstractmethod
    async def complete(self, conversation: Conversation, item: LabelItem) -> Completion: ...


def api_key(provider: str, *, required: bool = True) -> str:
    variable = API_KEY_ENV[provider]
    key = os.environ.get(variable, "").strip()
    if key:
        return key
    if not required:
        return NO_KEY
    raise ProviderSetupError(
        f"{variable} is not set in the environment of the Ray cluster; export it where the "
        f"cluster runs (e.g. before `ray start`), never in the job's runtime_env"
    )


def redact(text: str) -> str:
    for variable in API_KEY_ENV.values():
        key = os.environ.get(variable, "").strip()
        if len(key) >= 8:
            text = text.replace(key, "[redacted]")
    return text


def status_error(status: int, message: str, headers: Mapping[str, str]) -> ProviderError:
    """The error for an HTTP status from a provider."""
    text = f"HTTP {status}: {message}"
    if status == 429:
        return RateLimited(text, retry_after(headers))
    if status >= 500 or status in (408, 409):
        return TransientError(text)
    return PermanentError(text)


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or a date)."""
    milliseconds = headers.get("retry-after-ms")
    if milliseconds:
        try:
            return max(0.0, float(milliseconds) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def make_provider(spec: ProviderSpec, options: RequestOptions) -> Provider:
    if spec.provider in ("openai", "openai-compatible"):
        from saeray.labeling.providers.openai_provider import OpenAIProvider

        return OpenAIProvider(spec, options)
    if spec.provider == "anthropic":
        from saeray.labeling.providers.anthropic_provider import AnthropicProvider

        return AnthropicProvider(spec, options)
    from saeray.labeling.providers.offline import OfflineLabeler

    return OfflineLabeler(spec, options)
