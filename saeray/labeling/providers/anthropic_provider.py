"""Anthropic's Messages API through the official async SDK. It has no JSON mode here: the
prompt asks for the JSON object and the answer is validated like any other."""

from __future__ import annotations

import anthropic

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


class AnthropicProvider(Provider):
    def __init__(self, spec: ProviderSpec, options: RequestOptions) -> None:
        super().__init__(spec, options)
        self.client = anthropic.AsyncAnthropic(
            api_key=api_key("anthropic"),
            base_url=spec.base_url,
            max_retries=0,
            timeout=options.timeout_s,
        )

    async def complete(self, conversation: Conversation, item: LabelItem) -> Completion:
        try:
            response = await self.client.messages.create(
                model=self.spec.model,
                max_tokens=self.options.max_output_tokens,
                system=conversation.system,
                messages=[{"role": role, "content": text} for role, text in conversation.turns],
            )
        except anthropic.APIConnectionError as exc:  # includes timeouts
            raise TransientError(f"{type(exc).__name__}: {exc}") from None
        except anthropic.APIStatusError as exc:
            raise status_error(exc.status_code, exc.message, exc.response.headers) from None
        text = "".join(block.text for block in response.content if block.type == "text")
        return Completion(
            text=text,
            tokens_in=response.usage.input_tokens,
            tokens_out=response.usage.output_tokens,
        )
