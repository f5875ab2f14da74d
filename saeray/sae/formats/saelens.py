"""SAELens: ``cfg.json`` + ``sae_weights.safetensors`` (+ ``sparsity.safetensors``).

Reads both 6.x configs (``architecture``, descriptive fields under ``metadata``) and
pre-6.0 flat configs (``hook_name``/``hook_point``, ``hook_layer``, ``activation_fn_str``
with ``activation_fn_kwargs.k`` for TopK, boolean ``normalize_activations``). Weights are
SAELens's own orientation: ``W_enc [d_in, d_sae]``, ``W_dec [d_sae, d_in]``.

Conventions folded into the weights, so encodings equal SAELens's:
- ``rescale_acts_by_decoder_norm`` (TopK/BatchTopK): decoder rows to unit norm.
- ``normalize_activations: expected_average_only_in``: the constant input scaling, from
  ``activation_scaler.json`` (6.x checkpoints), ``activations_store_state.safetensors``
  (5.x) or ``norm_scaling_factor=``.
- a pre-6.0 ``scaling_factor`` (finetuning) tensor: into the decoder rows.
BatchTopK training checkpoints (``topk_threshold``) load as JumpReLU, as SAELens saves
them for inference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from safetensors import safe_open
from torch import Tensor

from saeray.errors import InvalidInputError
from saeray.sae.architectures import GatedSAE, JumpReLUSAE, StandardSAE, TopKSAE
from saeray.sae.base import NORMALIZATIONS, SAE, HookInfo
from saeray.sae.files import SAEFiles, require
from saeray.sae.formats.common import (
    LoadOptions,
    SAEFormat,
    finish,
    layer_of,
    optional_json,
    optional_str,
    required_json,
)
from saeray.sae.io import read_json, read_safetensors
from saeray.sae.tensors import (
    TensorFile,
    check_config_dim,
    fold_decoder_norm,
    fold_input_scale,
    positive_number,
)

CONFIG = "cfg.json"
WEIGHTS = "sae_weights.safetensors"
SPARSITY = "sparsity.safetensors"
SCALER = "activation_scaler.json"
STORE_STATE = "activations_store_state.safetensors"

# Descriptive config fields kept in ``SAE.metadata``.
DESCRIPTIVE_KEYS = (
    "hook_head_index",
    "reshape_activations",
    "context_size",
    "prepend_bos",
    "dataset_path",
    "neuronpedia_id",
    "model_class_name",
    "model_from_pretrained_kwargs",
    "exclude_special_tokens",
    "seqpos_slice",
    "sae_lens_version",
    "sae_lens_training_version",
)
# Trained as BatchTopK, run as JumpReLU with the learned global threshold.
BATCH_TOPK_ARCHITECTURES = ("batchtopk", "matryoshka_batchtopk")
SUPPORTED_ARCHITECTURES = ("standard", "jumprelu", "topk", "gated", *BATCH_TOPK_ARCHITECTURES)


@dataclass(frozen=True)
class SAELensConfig:
    """A SAELens config, any version, reduced to what loading needs."""

    architecture: str
    d_in: Any
    d_sae: Any
    k: int | None
    rescale_acts_by_decoder_norm: bool
    apply_b_dec_to_input: bool
    normalize_activations: str
    finetuning_scaling_factor: bool
    hook: HookInfo
    model_name: str | None
    metadata: dict[str, Any]


def looks_like_saelens(config: dict[str, Any]) -> bool:
    return "d_in" in config and "d_sae" in config


def detect(files: SAEFiles) -> bool:
    config = optional_json(files, CONFIG)
    return config is not None and looks_like_saelens(config)


def parse_config(config: dict[str, Any], label: str) -> SAELensConfig:
    meta = config.get("metadata")
    meta = meta if isinstance(meta, dict) else {}

    def described(*keys: str) -> Any:
        # 6.x keeps these under metadata; pre-6.0 at the top level, some under older names.
        for key in keys:
            for source in (meta, config):
                if source.get(key) is not None:
                    return source[key]
        return None

    hook_name = described("hook_name", "hook_point")
    if hook_name is not None and not isinstance(hook_name, str):
        raise InvalidInputError(f"{label}: hook_name should be a string; got {hook_name!r}")
    hook_layer = described("hook_layer", "hook_point_layer")
    if hook_layer is None:
        hook_layer = layer_of(hook_name)
    elif isinstance(hook_layer, bool) or not isinstance(hook_layer, int):
        raise InvalidInputError(f"{label}: hook_layer should be an integer; got {hook_layer!r}")

    architecture = optional_str(config, "architecture", label) or "standard"
    activation = config.get("activation_fn_str") or config.get("activation_fn") or "relu"
    kwargs = config.get("activation_fn_kwargs") or {}
    if architecture == "standard" and activation == "topk":  # pre-6.0 TopK
        architecture = "topk"
    elif architecture == "standard" and activation != "relu":
        raise InvalidInputError(
            f"{label}: activation_fn {activation!r} is not supported; saeray loads ReLU, "
            "JumpReLU, TopK and gated SAELens SAEs"
        )
    k = config.get("k", kwargs.get("k") if isinstance(kwargs, dict) else None)

    normalize = config.get("normalize_activations")
    if isinstance(normalize, bool) or normalize is None:  # pre-6.0 wrote a flag
        normalize = "expected_average_only_in" if normalize else "none"
    if normalize not in (*NORMALIZATIONS, "expected_average_only_in"):
        raise InvalidInputError(
            f"{label}: normalize_activations {normalize!r} is not supported; saeray reads "
            f"{', '.join((*NORMALIZATIONS, 'expected_average_only_in'))}"
        )

    model_name = described("model_name")
    return SAELensConfig(
        architecture=architecture,
        d_in=config.get("d_in"),
        d_sae=config.get("d_sae"),
        k=k,
        # BatchTopK training configs default to rescaling, as SAELens's do.
        rescale_acts_by_decoder_norm=bool(
            config.get("rescale_acts_by_decoder_norm", architecture in BATCH_TOPK_ARCHITECTURES)
        ),
        apply_b_dec_to_input=bool(config.get("apply_b_dec_to_input", True)),
        normalize_activations=normalize,
        finetuning_scaling_factor=bool(config.get("finetuning_scaling_factor", False)),
        hook=HookInfo(name=hook_name, layer=hook_layer),
        model_name=str(model_name) if model_name is not None else None,
        metadata={key: value for key in DESCRIPTIVE_KEYS if (value := described(key)) is not None},
    )


def load(files: SAEFiles, options: LoadOptions) -> SAE:
    return load_saelens_folder(files, options, format_name="saelens")


def load_saelens_folder(files: SAEFiles, options: LoadOptions, *, format_name: str) -> SAE:
    label = f"{files.label}/{CONFIG}"
    config = parse_config(required_json(files, CONFIG, "the SAELens config"), label)
    if config.architecture not in SUPPORTED_ARCHITECTURES:
        raise InvalidInputError(
            f"{label}: architecture {config.architecture!r} is not supported; saeray loads "
            f"{', '.join(SUPPORTED_ARCHITECTURES)} (transcoders are not SAEs)"
        )
    weights = read_safetensors(
        require(files, WEIGHTS, "the SAE weights"), f"{files.label}/{WEIGHTS}"
    )
    gated = config.architecture == "gated"
    d_in = weights.vector("b_dec").shape[0]
    d_sae = weights.vector("b_gate" if gated else "b_enc").shape[0]
    check_config_dim(label, "d_in", config.d_in, d_in, f"b_dec in {weights.label}")
    check_config_dim(
        label, "d_sae", config.d_sae, d_sae, f"{'b_gate' if gated else 'b_enc'} in {weights.label}"
    )
    W_enc = weights.matrix("W_enc", (d_in, d_sae), "(d_in, d_sae)")
    W_dec = _apply_finetuning_scale(
        weights, config, weights.matrix("W_dec", (d_sae, d_in), "(d_sae, d_in)")
    )
    b_dec = weights.vector("b_dec")

    normalize = config.normalize_activations
    if normalize == "expected_average_only_in":
        scale = _norm_scaling_factor(files, options, label)
        W_enc, W_dec, b_dec = fold_input_scale(W_enc, W_dec, b_dec, scale)
        normalize = "none"

    common: dict[str, Any] = {
        "W_enc": W_enc,
        "W_dec": W_dec,
        "b_dec": b_dec,
        "apply_b_dec_to_input": config.apply_b_dec_to_input,
        "normalize_activations": normalize,
        "hook": config.hook,
        "model_name": config.model_name,
        "format": format_name,
        "metadata": config.metadata,
        "log_sparsity": _log_sparsity(files, d_sae),
    }
    sae = _build(config, weights, common, label)
    return finish(sae, weights.stored_dtype("W_enc"), options)


def _build(config: SAELensConfig, weights: TensorFile, common: dict[str, Any], label: str) -> SAE:
    d_sae = common["W_enc"].shape[1]
    if config.architecture == "gated":
        return GatedSAE(
            b_gate=weights.vector("b_gate"),
            b_mag=weights.vector("b_mag", d_sae, "d_sae"),
            r_mag=weights.vector("r_mag", d_sae, "d_sae"),
            **common,
        )
    b_enc = weights.vector("b_enc")
    if config.architecture == "standard":
        return StandardSAE(b_enc=b_enc, **common)
    if config.architecture == "jumprelu":
        return JumpReLUSAE(
            b_enc=b_enc, threshold=weights.vector("threshold", d_sae, "d_sae"), **common
        )
    if config.rescale_acts_by_decoder_norm:
        common["W_enc"], b_enc, common["W_dec"], _ = fold_decoder_norm(
            common["W_enc"], b_enc, common["W_dec"]
        )
    if config.architecture == "topk":
        if isinstance(config.k, bool) or not isinstance(config.k, int):
            raise InvalidInputError(f"{label}: a TopK SAE needs an integer k; got {config.k!r}")
        return TopKSAE(b_enc=b_enc, k=config.k, **common)
    # BatchTopK: the threshold applies to the (rescaled) pre-activations as they are.
    threshold = torch.full((d_sae,), weights.number("topk_threshold"), dtype=b_enc.dtype)
    return JumpReLUSAE(b_enc=b_enc, threshold=threshold, **common)


def _apply_finetuning_scale(weights: TensorFile, config: SAELensConfig, W_dec: Tensor) -> Tensor:
    """Pre-6.0 SAEs may scale features before decoding; fold that into the decoder rows."""
    name = next((n for n in ("scaling_factor", "finetuning_scaling_factor") if n in weights), None)
    if name is None:
        return W_dec
    scale = weights.vector(name, W_dec.shape[0], "d_sae")
    if torch.allclose(scale, torch.ones_like(scale)):
        return W_dec
    if not config.finetuning_scaling_factor:
        raise InvalidInputError(
            f"{weights.label} has a {name} tensor that is not all ones but the config does not "
            "set finetuning_scaling_factor; the config and weights disagree"
        )
    return W_dec * scale[:, None]


def _norm_scaling_factor(files: SAEFiles, options: LoadOptions, label: str) -> float:
    """The constant input scaling an ``expected_average_only_in`` SAE was trained with."""
    if options.norm_scaling_factor is not None:
        return positive_number(options.norm_scaling_factor, "norm_scaling_factor")
    scaler = files.find(SCALER)
    if scaler is not None:
        value = read_json(scaler, f"{files.label}/{SCALER}").get("scaling_factor")
        return positive_number(value, f"scaling_factor in {files.label}/{SCALER}")
    state = files.find(STORE_STATE)
    if state is not None:
        # Read the one scalar; the file may also hold a large activation buffer.
        with safe_open(state, framework="pt") as handle:
            if "estimated_norm_scaling_factor" in handle.keys():  # noqa: SIM118
                value = handle.get_tensor("estimated_norm_scaling_factor").item()
                return positive_number(value, f"estimated_norm_scaling_factor in {state}")
    raise InvalidInputError(
        f"{label} sets normalize_activations=expected_average_only_in but no scaling factor "
        f"was found ({SCALER} or {STORE_STATE}); pass norm_scaling_factor= (SAELens lists it "
        f'in pretrained_saes.yaml) or write {SCALER} with {{"scaling_factor": ...}} beside {CONFIG}'
    )


def _log_sparsity(files: SAEFiles, d_sae: int) -> Tensor | None:
    path = files.find(SPARSITY)
    if path is None:
        return None
    return read_safetensors(path, f"{files.label}/{SPARSITY}").vector("sparsity", d_sae, "d_sae")


FORMAT = SAEFormat(
    name="saelens",
    files=(CONFIG, WEIGHTS, SPARSITY),
    detect=detect,
    load=load,
)
