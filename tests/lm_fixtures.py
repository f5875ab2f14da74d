"""Tiny random transformers and tokenizers, built in-process for the lm and corpus tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import transformers as tf
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from torch import nn

VOCAB = 96
_SMALL = {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2, "vocab_size": VOCAB}
_DECODER = {**_SMALL, "num_key_value_heads": 1, "head_dim": 16}


@dataclass(frozen=True)
class Architecture:
    """How to build a tiny model, and where its parts are expected to be found."""

    build: Callable[[], nn.Module]
    layers_path: str
    mlp_path: str
    attn_path: str


ARCHITECTURES = {
    "gpt2": Architecture(
        lambda: tf.GPT2LMHeadModel(
            tf.GPT2Config(
                n_embd=32,
                n_layer=3,
                n_head=2,
                n_positions=64,
                vocab_size=VOCAB,
                bos_token_id=1,
                eos_token_id=1,
            )
        ),
        "transformer.h",
        "mlp",
        "attn",
    ),
    "llama": Architecture(
        lambda: tf.LlamaForCausalLM(tf.LlamaConfig(num_hidden_layers=3, **_DECODER)),
        "model.layers",
        "mlp",
        "self_attn",
    ),
    "qwen3": Architecture(
        lambda: tf.Qwen3ForCausalLM(tf.Qwen3Config(num_hidden_layers=3, **_DECODER)),
        "model.layers",
        "mlp",
        "self_attn",
    ),
    "gpt_neox": Architecture(
        lambda: tf.GPTNeoXForCausalLM(tf.GPTNeoXConfig(num_hidden_layers=3, **_SMALL)),
        "gpt_neox.layers",
        "mlp",
        "attention",
    ),
    "bert": Architecture(
        lambda: tf.BertModel(tf.BertConfig(num_hidden_layers=3, **_SMALL)),
        "encoder.layer",
        "output.dense",
        "attention.output.dense",
    ),
}

# Architectures checked for layer and submodule discovery only.
MORE_ARCHITECTURES = {
    "opt": Architecture(
        lambda: tf.OPTForCausalLM(
            tf.OPTConfig(
                hidden_size=32,
                ffn_dim=64,
                word_embed_proj_dim=32,
                num_hidden_layers=2,
                num_attention_heads=2,
                vocab_size=VOCAB,
            )
        ),
        "model.decoder.layers",
        "fc2",
        "self_attn",
    ),
    "gpt_neo": Architecture(
        lambda: tf.GPTNeoForCausalLM(
            tf.GPTNeoConfig(
                hidden_size=32,
                num_layers=2,
                num_heads=2,
                attention_types=[[["global", "local"], 1]],
                max_position_embeddings=64,
                vocab_size=VOCAB,
            )
        ),
        "transformer.h",
        "mlp",
        "attn",
    ),
    "gemma3": Architecture(
        lambda: tf.Gemma3ForConditionalGeneration(
            tf.Gemma3Config(
                text_config=tf.Gemma3TextConfig(num_hidden_layers=2, **_DECODER).to_dict(),
                vision_config=tf.SiglipVisionConfig(
                    hidden_size=32,
                    intermediate_size=64,
                    num_hidden_layers=2,
                    num_attention_heads=2,
                    image_size=28,
                    patch_size=14,
                ).to_dict(),
                mm_tokens_per_image=4,
                boi_token_index=VOCAB - 3,
                eoi_token_index=VOCAB - 2,
                image_token_index=VOCAB - 1,
            )
        ),
        "model.language_model.layers",
        "post_feedforward_layernorm",
        "post_attention_layernorm",
    ),
}


def tiny_model(name: str, seed: int = 0) -> nn.Module:
    """A tiny random model in eval mode, gradients off; the same weights for the same seed."""
    torch.manual_seed(seed)
    spec = ARCHITECTURES.get(name) or MORE_ARCHITECTURES[name]
    return spec.build().eval().requires_grad_(False)


WORDS = "the a of to and in is it that for on with as was at by an be this from or not".split()  # noqa: SIM905


def tiny_tokenizer(style: str) -> tf.PreTrainedTokenizerFast:
    """A word-level fast tokenizer with the special-token habits of a model family.

    - ``bert``: adds [CLS] ... [SEP] itself;
    - ``llama``: adds <s> itself;
    - ``gpt2``: has a BOS token (<|endoftext|>) but adds nothing;
    - ``plain``: has no BOS and adds nothing (Qwen-like).
    """
    specials = {
        "bert": {"cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]"},
        "llama": {"bos_token": "<s>", "eos_token": "</s>"},
        "gpt2": {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"},
        "plain": {"eos_token": "<|endoftext|>", "pad_token": "<|pad|>"},
    }[style]
    special_tokens = ["[UNK]", *dict.fromkeys(specials.values())]
    vocab = {token: index for index, token in enumerate([*special_tokens, *WORDS])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    if style == "bert":
        backend.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 1), ("[SEP]", 2)]
        )
    elif style == "llama":
        backend.post_processor = processors.TemplateProcessing(
            single="<s> $A", special_tokens=[("<s>", 1)]
        )
    return tf.PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", **specials)
