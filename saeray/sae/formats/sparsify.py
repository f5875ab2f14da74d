"""EleutherAI sparsify: one folder per hook point, ``cfg.json`` + ``sae.safetensors``.

``sae.safetensors`` holds ``encoder.weight [d_sae, d_in]``, ``encoder.bias [d_sae]``,
``W_dec [d_sae, d_in]`` and ``b_dec [d_in]``. sparsify encodes
``topk(relu((x - b_dec) @ encoder.weight.T + encoder.bias), k)`` (no ``b_dec`` subtraction
for transcoders) and decodes ``acts @ W_dec + b_dec``. The folder's name is the hook
point (``layers.10``); the run folder above it may hold ``config.json`` naming the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from saeray.errors import InvalidInputError
from saeray.sae.architectures import TopKSAE
from saeray.sae.base import SAE, HookInfo
from saeray.sae.files import SAEFiles, require
from saeray.sae.formats.common import (
    LoadOptions,
    SAEFormat,
    finish,
    layer_of,
    optional_int,
    optional_json,
    refuse,
    required_json,
)
from saeray.sae.io import read_json, read_safetensors
from saeray.sae.tensors import check_config_dim

CONFIG = "cfg.json"
WEIGHTS = "sae.safetensors"
RUN_CONFIG = "config.json"  # in the parent (run) folder


def looks_like_sparsify(config: dict[str, Any]) -> bool:
    return "d_in" in config and "k" in config and "d_sae" not in config


def detect(files: SAEFiles) -> bool:
    config = optional_json(files, CONFIG)
    return config is not None and looks_like_sparsify(config)


def load(files: SAEFiles, options: LoadOptions) -> SAE:
    label = f"{files.label}/{CONFIG}"
    config = required_json(files, CONFIG, "the sparsify config")
    _refuse_variants(config, label)
    k = optional_int(config, "k", label)
    if k is None:
        raise InvalidInputError(f"{label} has no k: how many latents are active per token")
    weights_path = require(files, WEIGHTS, "the sparsify weights")
    weights = read_safetensors(weights_path, f"{files.label}/{WEIGHTS}")

    d_in = weights.vector("b_dec").shape[0]
    d_sae = weights.vector("encoder.bias").shape[0]
    check_config_dim(label, "d_in", config.get("d_in"), d_in, f"b_dec in {weights.label}")
    stated_latents = config.get("num_latents") or _expansion_width(config, d_in)
    check_config_dim(
        label, "num_latents", stated_latents, d_sae, f"encoder.bias in {weights.label}"
    )
    hook_name = weights_path.absolute().parent.name or None
    sae = TopKSAE(
        W_enc=weights.matrix("encoder.weight", (d_sae, d_in), "(d_sae, d_in)").T,
        b_enc=weights.vector("encoder.bias"),
        W_dec=weights.matrix("W_dec", (d_sae, d_in), "(d_sae, d_in)"),
        b_dec=weights.vector("b_dec"),
        k=k,
        apply_b_dec_to_input=True,
        hook=HookInfo(name=hook_name, layer=layer_of(hook_name)),
        model_name=_model_name(weights_path),
        format="sparsify",
        metadata={
            key: config[key] for key in ("expansion_factor", "normalize_decoder") if key in config
        },
    )
    return finish(sae, weights.stored_dtype("encoder.weight"), options)


def _refuse_variants(config: dict[str, Any], label: str) -> None:
    if config.get("activation", "topk") != "topk":
        raise refuse(label, f"activation {config['activation']!r}", "only TopK sparsify SAEs load")
    if config.get("transcode"):
        raise refuse(
            label,
            "this is a transcoder (transcode: true), not an SAE",
            "use an SAE of the release instead",
        )
    if config.get("skip_connection"):
        raise refuse(label, "it has a skip connection (W_skip)", "use an SAE without one")
    if config.get("signed"):
        raise refuse(label, "it is a signed (legacy) SAE", "use an unsigned SAE")


def _expansion_width(config: dict[str, Any], d_in: int) -> int | None:
    factor = config.get("expansion_factor")
    return d_in * factor if isinstance(factor, int) and not isinstance(factor, bool) else None


def _model_name(weights_path: Path) -> str | None:
    # The run folder is beside the file, not an SAE file itself: read it when it is here.
    run_config = weights_path.absolute().parent.parent / RUN_CONFIG
    if not run_config.is_file():
        return None
    model = read_json(run_config, str(run_config)).get("model")
    return model if isinstance(model, str) else None


FORMAT = SAEFormat(name="sparsify", files=(CONFIG, WEIGHTS), detect=detect, load=load)
