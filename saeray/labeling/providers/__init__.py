"""Labelers behind one interface (providers.base): OpenAI, Anthropic, OpenAI-compatible
servers, and the offline labeler."""
