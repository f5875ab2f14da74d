"""Language models: loading, hook points, early-stopped activation reads, token masks."""

from saeray.lm.architecture import LayerStack, find_layers
from saeray.lm.hooks import (
    SITES,
    ActivationReader,
    HookPoint,
    hook_names,
    hook_width,
    resolve_hook,
)
from saeray.lm.loading import (
    LoadedModel,
    ModelInfo,
    describe_model,
    load_model,
    resolve_dtype,
    unembedding,
)
from saeray.lm.masks import special_token_ids, token_mask

__all__ = [
    "SITES",
    "ActivationReader",
    "HookPoint",
    "LayerStack",
    "LoadedModel",
    "ModelInfo",
    "describe_model",
    "find_layers",
    "hook_names",
    "hook_width",
    "load_model",
    "resolve_dtype",
    "resolve_hook",
    "special_token_ids",
    "token_mask",
    "unembedding",
]
