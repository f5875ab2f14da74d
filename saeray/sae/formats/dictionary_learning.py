"""saprmarks dictionary_learning: ``ae.pt`` (a state_dict) + ``config.json``.

The class is ``config.json``'s ``trainer.dict_class``; each keeps its own key names:

- ``AutoEncoder``: ``encoder.weight [d_sae, d_in]``, ``encoder.bias``, ``decoder.weight
  [d_in, d_sae]``, ``bias [d_in]``; ``relu(encoder(x - bias))``. Loaded as its
  ``from_pretrained`` does by default: decoder columns normalised to unit norm, the
  norms folded into the encoder.
- ``AutoEncoderNew``: ``encoder``/``decoder`` Linear layers with biases, no subtraction.
- ``GatedAutoEncoder``: ``encoder.weight`` (no bias), ``decoder.weight``,
  ``decoder_bias``, ``r_mag``, ``gate_bias``, ``mag_bias``.
- ``AutoEncoderTopK``: ``encoder``, ``decoder.weight``, ``b_dec`` and buffers ``k``,
  ``threshold``; inference keeps the top k (the threshold is only used on request).
- ``BatchTopKSAE`` (same keys) and ``MatryoshkaBatchTopKSAE`` (``W_enc [d_in, d_sae]``,
  ``b_enc``, ``W_dec [d_sae, d_in]``, ``b_dec``): inference applies the learned global
  ``threshold``, i.e. JumpReLU.
- ``JumpReluAutoEncoder``: ``W_enc``, ``b_enc``, ``W_dec``, ``b_dec``, ``threshold
  [d_sae]``; no ``b_dec`` subtraction.

Weights are saved after training with any activation normalisation folded into the
biases, so they read raw activations.
"""

from __future__ import annotations

from typing import Any

import torch

from saeray.errors import InvalidInputError
from saeray.sae.architectures import GatedSAE, JumpReLUSAE, StandardSAE, TopKSAE
from saeray.sae.base import SAE, HookInfo
from saeray.sae.files import SAEFiles, require
from saeray.sae.formats.common import (
    LoadOptions,
    SAEFormat,
    finish,
    layer_of,
    optional_int,
    optional_json,
    optional_str,
    refuse,
    required_json,
)
from saeray.sae.io import read_torch_state_dict
from saeray.sae.tensors import TensorFile, check_config_dim, fold_decoder_norm

CONFIG = "config.json"
WEIGHTS = "ae.pt"
LINEAR_CLASSES = ("AutoEncoder", "AutoEncoderNew", "AutoEncoderTopK", "BatchTopKSAE")
MATRIX_CLASSES = ("JumpReluAutoEncoder", "MatryoshkaBatchTopKSAE")
SUPPORTED_CLASSES = (*LINEAR_CLASSES, *MATRIX_CLASSES, "GatedAutoEncoder")


def detect(files: SAEFiles) -> bool:
    config = optional_json(files, CONFIG)
    return config is not None and isinstance(config.get("trainer"), dict)


def load(files: SAEFiles, options: LoadOptions) -> SAE:
    label = f"{files.label}/{CONFIG}"
    config = required_json(files, CONFIG, "the dictionary_learning config")
    trainer = config.get("trainer")
    if not isinstance(trainer, dict):
        raise InvalidInputError(
            f"{label} has no 'trainer' section; it is not a dictionary_learning config"
        )
    dict_class = optional_str(trainer, "dict_class", label)
    if dict_class not in SUPPORTED_CLASSES:
        raise refuse(
            label, f"dict_class {dict_class!r}", f"supported: {', '.join(SUPPORTED_CLASSES)}"
        )
    weights = read_torch_state_dict(
        require(files, WEIGHTS, "the dictionary weights"), f"{files.label}/{WEIGHTS}"
    )

    hook_name = optional_str(trainer, "submodule_name", label)
    layer = optional_int(trainer, "layer", label)
    common: dict[str, Any] = {
        "hook": HookInfo(name=hook_name, layer=layer if layer is not None else layer_of(hook_name)),
        "model_name": optional_str(trainer, "lm_name", label),
        "format": "dictionary_learning",
        "metadata": {"dict_class": dict_class, "trainer_class": trainer.get("trainer_class")},
    }
    if dict_class == "GatedAutoEncoder":
        sae: SAE = _gated(weights, trainer, label, common)
    elif dict_class in MATRIX_CLASSES:
        sae = _matrix_layout(dict_class, weights, trainer, label, common)
    else:
        sae = _linear_layout(dict_class, weights, trainer, label, common)
    encoder = "W_enc" if dict_class in MATRIX_CLASSES else "encoder.weight"
    return finish(sae, weights.stored_dtype(encoder), options)


def _check_dims(
    trainer: dict[str, Any], label: str, d_in: int, d_sae: int, bias: str, weights: TensorFile
) -> None:
    check_config_dim(
        label,
        "trainer.activation_dim",
        trainer.get("activation_dim"),
        d_in,
        f"{bias} in {weights.label}",
    )
    check_config_dim(
        label,
        "trainer.dict_size",
        trainer.get("dict_size"),
        d_sae,
        f"the feature biases in {weights.label}",
    )


def _linear_layout(
    dict_class: str,
    weights: TensorFile,
    trainer: dict[str, Any],
    label: str,
    common: dict[str, Any],
) -> SAE:
    """Classes built from ``nn.Linear`` encoder/decoder layers."""
    decoder_bias = {"AutoEncoder": "bias", "AutoEncoderNew": "decoder.bias"}.get(
        dict_class, "b_dec"
    )
    b_dec = weights.vector(decoder_bias)
    b_enc = weights.vector("encoder.bias")
    d_in, d_sae = b_dec.shape[0], b_enc.shape[0]
    _check_dims(trainer, label, d_in, d_sae, decoder_bias, weights)
    W_enc = weights.matrix("encoder.weight", (d_sae, d_in), "(dict_size, activation_dim)").T
    W_dec = weights.matrix("decoder.weight", (d_in, d_sae), "(activation_dim, dict_size)").T
    common.update(apply_b_dec_to_input=dict_class != "AutoEncoderNew", b_dec=b_dec)
    if dict_class == "AutoEncoder":
        W_enc, b_enc, W_dec, _ = fold_decoder_norm(W_enc, b_enc, W_dec)
        return StandardSAE(W_enc=W_enc, W_dec=W_dec, b_enc=b_enc, **common)
    if dict_class == "AutoEncoderNew":
        return StandardSAE(W_enc=W_enc, W_dec=W_dec, b_enc=b_enc, **common)
    if dict_class == "AutoEncoderTopK":
        k = _k(weights, trainer, label)
        return TopKSAE(W_enc=W_enc, W_dec=W_dec, b_enc=b_enc, k=k, **common)
    threshold = torch.full((d_sae,), weights.number("threshold"), dtype=b_enc.dtype)
    common["metadata"]["k"] = _k(weights, trainer, label)  # the average L0 it was trained to
    return JumpReLUSAE(W_enc=W_enc, W_dec=W_dec, b_enc=b_enc, threshold=threshold, **common)


def _matrix_layout(
    dict_class: str,
    weights: TensorFile,
    trainer: dict[str, Any],
    label: str,
    common: dict[str, Any],
) -> SAE:
    """Classes storing SAELens-style ``W_enc``/``W_dec`` parameters."""
    b_dec, b_enc = weights.vector("b_dec"), weights.vector("b_enc")
    d_in, d_sae = b_dec.shape[0], b_enc.shape[0]
    _check_dims(trainer, label, d_in, d_sae, "b_dec", weights)
    if dict_class == "JumpReluAutoEncoder":
        threshold = weights.vector("threshold", d_sae, "dict_size")
        common["apply_b_dec_to_input"] = False
    else:  # MatryoshkaBatchTopKSAE: a global threshold, all groups active at inference
        threshold = torch.full((d_sae,), weights.number("threshold"), dtype=b_enc.dtype)
        common["apply_b_dec_to_input"] = True
        common["metadata"]["k"] = _k(weights, trainer, label)
    return JumpReLUSAE(
        W_enc=weights.matrix("W_enc", (d_in, d_sae), "(activation_dim, dict_size)"),
        W_dec=weights.matrix("W_dec", (d_sae, d_in), "(dict_size, activation_dim)"),
        b_dec=b_dec,
        b_enc=b_enc,
        threshold=threshold,
        **common,
    )


def _gated(weights: TensorFile, trainer: dict[str, Any], label: str, common: dict[str, Any]) -> SAE:
    b_dec, b_gate = weights.vector("decoder_bias"), weights.vector("gate_bias")
    d_in, d_sae = b_dec.shape[0], b_gate.shape[0]
    _check_dims(trainer, label, d_in, d_sae, "decoder_bias", weights)
    return GatedSAE(
        W_enc=weights.matrix("encoder.weight", (d_sae, d_in), "(dict_size, activation_dim)").T,
        W_dec=weights.matrix("decoder.weight", (d_in, d_sae), "(activation_dim, dict_size)").T,
        b_dec=b_dec,
        b_gate=b_gate,
        b_mag=weights.vector("mag_bias", d_sae, "dict_size"),
        r_mag=weights.vector("r_mag", d_sae, "dict_size"),
        apply_b_dec_to_input=True,
        **common,
    )


def _k(weights: TensorFile, trainer: dict[str, Any], label: str) -> int:
    """k from the state_dict buffer, else the config; both must agree when both exist."""
    stated = optional_int(trainer, "k", label)
    if "k" not in weights:
        if stated is None:
            raise InvalidInputError(f"{weights.label} has no k buffer and {label} no trainer.k")
        return stated
    stored = weights.number("k")
    if stored != int(stored) or (stated is not None and stated != int(stored)):
        raise InvalidInputError(
            f"k in {weights.label} is {stored} but {label} says trainer.k={stated}; they must agree"
        )
    return int(stored)


FORMAT = SAEFormat(name="dictionary_learning", files=(CONFIG, WEIGHTS), detect=detect, load=load)
