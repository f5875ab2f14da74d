"""OpenAI and any OpenAI-compatible server (vLLM, Ollama, llama.cpp server) through the
official async SDK. Structured output: a strict JSON schema for OpenAI, a JSON object for
compatible servers (the mode most of them support), or plain text."""

from __future__ import annotations

import openai

from saeray.labeling.answer import ANSWER_SCHEMA
from saeray.labeling.config import ProviderSpec
from saeray.labeling.items import Conversation, LabelItem
from saeray.labeling.providers.base import (
    Completion,
    Provider,
    RequestOptions,
    TransientError,
    api_key,
    status_error,
)


class OpenAIProvider(Provider):
    def __init__(self, spec: ProviderSpec, options: RequestOptions) -> None:
        super().__init__(spec, options)
        compatible = spec.provider == "openai-compatible"
        self.client = openai.AsyncOpenAI(
            api_key=api_key(spec.provider, required=not compatible),
            base_url=spec.base_url,
            max_retries=0,
            timeout=options.timeout_s,
        )
        self.response_format = options.response_format or (
            "json_object" if compatible else "json_schema"
        )
        # OpenAI's newer models refuse max_tokens; most compatible servers only know it.
        self.max_tokens_field = "max_tokens" if compatible else "max_completion_tokens"

    def _format(self) -> dict | None:
        if self.response_format == "json_schema":
            schema = {"name": "feature_label", "strict": True, "schema": ANSWER_SCHEMA}
            return {"type": "json_schema", "json_schema": schema}
        if self.response_format == "json_object":
            return {"type": "json_object"}
        return None

    async def complete(self, conversation: Conversation, item: LabelItem) -> Completion:
        messages = [{"role": "system", "content": conversation.system}]
        messages += [{"role": role, "content": text} for role, text in conversation.turns]
        extra: dict = {self.max_tokens_field: self.options.max_output_tokens}
        if (response_format := self._format()) is not None:
            extra["response_format"] = response_format
        try:
            response = await self.client.chat.completions.create(
                model=self.spec.model, messages=messages, **extra
            )
        except openai.APIConnectionError as exc:  # includes timeouts
            raise TransientError(f"{type(exc).__name__}: {exc}") from None
        except openai.APIStatusError as exc:
            raise status_error(exc.status_code, exc.message, exc.response.headers) from None
        message = response.choices[0].message if response.choices else None
        text = (message.content or message.refusal or "") if message else ""
        usage = response.usage
        return Completion(
            text=text,
            tokens_in=usage.prompt_tokens if usage else 0,
            tokens_out=usage.completion_tokens if usage else 0,
        )
