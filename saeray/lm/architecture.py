"""Where things sit inside a Hugging Face transformer, found generically.

The block list is the one ``nn.ModuleList`` whose length is ``num_hidden_layers`` (of the text
config, for multimodal models), leaving out vision and audio towers: ``transformer.h``
(GPT-2, GPT-Neo), ``gpt_neox.layers`` (Pythia), ``model.layers`` (Llama, Mistral, Qwen,
Gemma, Phi), ``model.language_model.layers`` (Gemma 3), ``model.decoder.layers`` (OPT),
``encoder.layer`` (BERT).

Inside a block, ``mlp_out`` and ``attn_out`` are what the sublayer writes into the residual
stream, read as the output of one submodule:

- sandwich norms (Gemma 2/3, OLMo 2: the block has ``post_feedforward_layernorm``): the
  output of ``post_feedforward_layernorm`` / ``post_attention_layernorm``, as in
  TransformerLens' ``hook_mlp_out`` / ``hook_attn_out``;
- BERT family (post-LN): the output of ``output.dense`` / ``attention.output.dense``, i.e.
  the sublayer's projection before the residual add and the LayerNorm (no module outputs
  the sublayer's write alone after the norm, which is applied to the sum);
- otherwise the first of ``mlp``, ``feed_forward``, ``ffn``, ``block_sparse_moe`` (OPT:
  ``fc2``) and of ``self_attn``, ``attn``, ``attention``, ``self_attention``.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from saeray.errors import InvalidInputError

_TOWER_WORDS = ("vision", "visual", "audio", "image")
_MLP_NAMES = ("mlp", "feed_forward", "ffn", "block_sparse_moe", "fc2")
_ATTN_NAMES = ("self_attn", "attn", "attention", "self_attention")


@dataclass(frozen=True)
class LayerStack:
    """The model's transformer blocks and the dotted path of their ``nn.ModuleList``."""

    path: str
    blocks: nn.ModuleList

    def __len__(self) -> int:
        return len(self.blocks)

    def block_path(self, layer: int) -> str:
        return f"{self.path}.{layer}"


def config_num_layers(model: nn.Module) -> int:
    config = getattr(model, "config", None)
    if config is None:
        raise InvalidInputError(
            f"{type(model).__name__} has no .config, so its layers cannot be found. "
            "Fix: pass a Hugging Face transformers model (saeray.lm.load_model loads one)."
        )
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    layers = getattr(text_config, "num_hidden_layers", None)
    if not isinstance(layers, int):
        raise InvalidInputError(
            f"the config of {type(model).__name__} has no num_hidden_layers, so its blocks "
            "cannot be told apart from other module lists. Fix: use a decoder-only or "
            "encoder-only transformers model whose config sets num_hidden_layers."
        )
    return layers


def find_layers(model: nn.Module) -> LayerStack:
    """The model's one list of transformer blocks; a clear error when there is none or several."""
    num_layers = config_num_layers(model)
    module_lists = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.ModuleList)]
    candidates = [
        (name, m)
        for name, m in module_lists
        if len(m) == num_layers
        and not any(word in part for part in name.lower().split(".") for word in _TOWER_WORDS)
    ]
    # A list nested inside another candidate (e.g. experts of one block) is not the stack.
    candidates = [
        (name, m)
        for name, m in candidates
        if not any(name.startswith(f"{other}.") for other, _ in candidates if other != name)
    ]
    if len(candidates) == 1:
        name, blocks = candidates[0]
        return LayerStack(path=name, blocks=blocks)
    found = ", ".join(f"{name} ({len(m)})" for name, m in module_lists) or "none"
    if not candidates:
        raise InvalidInputError(
            f"found no list of {num_layers} transformer blocks in {type(model).__name__} "
            f"(config.num_hidden_layers = {num_layers}); module lists found: {found}. "
            "Fix: use a model whose blocks sit in one nn.ModuleList (model.layers, "
            "transformer.h, gpt_neox.layers, encoder.layer, ...)."
        )
    names = ", ".join(name for name, _ in candidates)
    raise InvalidInputError(
        f"found several lists of {num_layers} blocks in {type(model).__name__}: {names}; "
        "saeray reads models with one stack of blocks. Fix: load the decoder-only or "
        "encoder-only text model on its own."
    )


def mlp_module_path(block: nn.Module) -> str | None:
    """Path, inside the block, of the module whose output is ``mlp_out`` (None: not found)."""
    modules = dict(block.named_modules())
    if "post_feedforward_layernorm" in modules:
        return "post_feedforward_layernorm"
    if "intermediate" in modules and "output.dense" in modules:
        return "output.dense"
    return next((name for name in _MLP_NAMES if name in modules), None)


def attn_module_path(block: nn.Module) -> str | None:
    """Path, inside the block, of the module whose output is ``attn_out`` (None: not found)."""
    modules = dict(block.named_modules())
    if "post_feedforward_layernorm" in modules and "post_attention_layernorm" in modules:
        return "post_attention_layernorm"
    if "attention.output.dense" in modules:
        return "attention.output.dense"
    return next((name for name in _ATTN_NAMES if name in modules), None)
