"""OpenMOSS Llama Scope: ``hyperparams.json`` + ``checkpoints/final.safetensors``.

Weights are ``nn.Linear`` layers: ``encoder.weight [d_sae, d_model]``, ``encoder.bias``,
``decoder.weight [d_model, d_sae]``, ``decoder.bias``. ``hyperparams.json`` gives
``d_model``, ``d_sae``, ``hook_point_in``/``hook_point_out``, ``act_fn``
(``jumprelu`` with one scalar ``jump_relu_threshold``, ``topk`` with ``top_k``, or
``relu``), ``norm_activation`` and ``dataset_average_activation_norm``.

Conventions follow SAELens's Llama Scope loader (which the Llama Scope authors
corrected): with ``norm_activation: dataset-wise`` the input scale
``s = sqrt(d_model) / dataset_average_activation_norm.in`` is folded into the weights
(``W_enc * s``, ``W_dec / s``, ``b_dec / s``) and the threshold becomes
``jump_relu_threshold * s``. ``token-wise`` normalisation is ``constant_norm_rescale``.
``sparsity_include_decoder_norm`` is ignored, as SAELens ignores it.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from saeray.errors import InvalidInputError
from saeray.sae.architectures import JumpReLUSAE, StandardSAE, TopKSAE
from saeray.sae.base import SAE, HookInfo
from saeray.sae.files import SAEFiles, require
from saeray.sae.formats.common import (
    LoadOptions,
    SAEFormat,
    finish,
    layer_of,
    optional_int,
    optional_str,
    refuse,
    required_json,
)
from saeray.sae.io import read_safetensors
from saeray.sae.tensors import check_config_dim, fold_input_scale, positive_number

CONFIG = "hyperparams.json"
WEIGHTS = "checkpoints/final.safetensors"
# Llama Scope releases are named after the model they read; its Hugging Face id.
_MODELS = {"Llama3_1-8B-Base": "meta-llama/Llama-3.1-8B"}


def detect(files: SAEFiles) -> bool:
    return files.find(CONFIG) is not None


def load(files: SAEFiles, options: LoadOptions) -> SAE:
    label = f"{files.label}/{CONFIG}"
    config = required_json(files, CONFIG, "the Llama Scope hyperparameters")
    hook_in = optional_str(config, "hook_point_in", label)
    hook_out = config.get("hook_point_out", hook_in)
    if hook_out != hook_in:
        raise refuse(
            label,
            f"it reads {hook_in} and writes {hook_out}: a transcoder",
            "use an SAE of the release instead",
        )
    weights = read_safetensors(
        require(files, WEIGHTS, "the Llama Scope weights"), f"{files.label}/{WEIGHTS}"
    )

    b_enc = weights.vector("encoder.bias")
    d_sae = b_enc.shape[0]
    d_in = optional_int(config, "d_model", label)
    if "decoder.bias" in weights or config.get("use_decoder_bias", True):
        b_dec = weights.vector("decoder.bias")
        check_config_dim(label, "d_model", d_in, b_dec.shape[0], f"decoder.bias in {weights.label}")
        d_in = b_dec.shape[0]
    elif d_in is None:
        raise InvalidInputError(f"{label} has no d_model and the weights no decoder.bias")
    else:
        b_dec = torch.zeros(d_in, dtype=b_enc.dtype)
    check_config_dim(label, "d_sae", config.get("d_sae"), d_sae, f"encoder.bias in {weights.label}")
    W_enc = weights.matrix("encoder.weight", (d_sae, d_in), "(d_sae, d_model)").T
    W_dec = weights.matrix("decoder.weight", (d_in, d_sae), "(d_model, d_sae)").T

    scale, normalize = _input_scale(config, label, d_in)
    W_enc, W_dec, b_dec = fold_input_scale(W_enc, W_dec, b_dec, scale)
    common: dict[str, Any] = {
        "W_enc": W_enc,
        "W_dec": W_dec,
        "b_dec": b_dec,
        "b_enc": b_enc,
        "apply_b_dec_to_input": bool(config.get("apply_decoder_bias_to_pre_encoder", False)),
        "normalize_activations": normalize,
        "hook": HookInfo(name=hook_in, layer=layer_of(hook_in)),
        "model_name": optional_str(config, "model_name", label) or _model_name(files.label),
        "format": "llama_scope",
    }
    act_fn = config.get("act_fn", "relu")
    if act_fn == "jumprelu":
        threshold = config.get("jump_relu_threshold")
        if isinstance(threshold, bool) or not isinstance(threshold, int | float):
            raise InvalidInputError(f"{label}: jump_relu_threshold should be a number")
        sae: SAE = JumpReLUSAE(threshold=torch.full((d_sae,), threshold * scale), **common)
    elif act_fn == "topk":
        k = optional_int(config, "top_k", label)
        if k is None:
            raise InvalidInputError(f"{label}: act_fn is topk but top_k is missing")
        sae = TopKSAE(k=k, **common)
    elif act_fn == "relu":
        sae = StandardSAE(**common)
    else:
        raise refuse(label, f"act_fn {act_fn!r}", "supported: jumprelu, topk, relu")
    return finish(sae, weights.stored_dtype("encoder.weight"), options)


def _input_scale(config: dict[str, Any], label: str, d_in: int) -> tuple[float, str]:
    """The constant input scale to fold in, and the per-token normalisation left to do."""
    mode = config.get("norm_activation", "none")
    if mode == "dataset-wise":
        norms = config.get("dataset_average_activation_norm")
        average = norms.get("in") if isinstance(norms, dict) else None
        return math.sqrt(d_in) / positive_number(
            average, f"{label}: dataset_average_activation_norm.in"
        ), "none"
    if mode == "token-wise":
        return 1.0, "constant_norm_rescale"
    if mode in ("none", "inference"):  # inference: already folded in by lm-saes
        return 1.0, "none"
    raise refuse(label, f"norm_activation {mode!r}", "supported: dataset-wise, token-wise, none")


def _model_name(where: str) -> str | None:
    return next((model for key, model in _MODELS.items() if key in where), None)


FORMAT = SAEFormat(name="llama_scope", files=(CONFIG, WEIGHTS), detect=detect, load=load)
