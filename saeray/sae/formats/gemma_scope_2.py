"""Google DeepMind Gemma Scope 2 (Gemma 3): ``params.safetensors`` + ``config.json``.

Tensors use lowercase names: ``w_enc [d_in, d_sae]``, ``w_dec [d_sae, d_in]``,
``b_enc``, ``b_dec``, ``threshold``; JumpReLU with no ``b_dec`` subtraction, as in
Gemma Scope. ``config.json`` (``hf_hook_point_in``, ``width``, ``model_name``,
``architecture: jump_relu``, ``l0``) names the hook as a Hugging Face module path; when
it is missing the hook is inferred from the folder (``resid_post/layer_12_...``) the
way SAELens does. Transcoders and CLTs (a ``hf_hook_point_out`` elsewhere, or an affine
skip connection) are not SAEs and are refused.
"""

from __future__ import annotations

import re
from typing import Any

from saeray.sae.base import SAE, HookInfo
from saeray.sae.files import SAEFiles, require
from saeray.sae.formats.common import (
    LoadOptions,
    SAEFormat,
    finish,
    layer_of,
    optional_json,
    optional_str,
    refuse,
)
from saeray.sae.formats.gemma_scope import jumprelu_from_params
from saeray.sae.io import read_safetensors
from saeray.sae.tensors import check_config_dim

CONFIG = "config.json"
WEIGHTS = "params.safetensors"
# Hugging Face module each Gemma Scope 2 site reads, by the folder it sits in.
_SITE_HOOKS = {
    "resid_post": "model.layers.{layer}.output",
    "attn_out": "model.layers.{layer}.self_attn.o_proj.input",
    "mlp_out": "model.layers.{layer}.post_feedforward_layernorm.output",
}
_SITE = re.compile(r"(?:^|/)(resid_post|attn_out|mlp_out)(?:_all)?/layer_(\d+)")
_TRANSCODER = re.compile(r"(?:^|/)(transcoder|clt)(?:_all)?/")


def detect(files: SAEFiles) -> bool:
    return files.find(WEIGHTS) is not None


def load(files: SAEFiles, options: LoadOptions) -> SAE:
    label = f"{files.label}/{CONFIG}"
    config = optional_json(files, CONFIG) or {}
    _refuse_transcoders(files.label, config, label)
    architecture = config.get("architecture", "jump_relu")
    if architecture != "jump_relu":
        raise refuse(label, f"architecture {architecture!r}", "Gemma Scope 2 SAEs are jump_relu")
    weights = read_safetensors(
        require(files, WEIGHTS, "the Gemma Scope 2 parameters"), f"{files.label}/{WEIGHTS}"
    )
    sae = jumprelu_from_params(
        weights,
        names=("w_enc", "w_dec", "b_enc", "b_dec", "threshold"),
        hook=_hook(files.label, config, label),
        model_name=optional_str(config, "model_name", label),
        format_name="gemma_scope_2",
        metadata={key: config[key] for key in ("l0", "width") if key in config},
    )
    check_config_dim(label, "width", config.get("width"), sae.d_sae, f"b_enc in {weights.label}")
    return finish(sae, weights.stored_dtype("w_enc"), options)


def _refuse_transcoders(where: str, config: dict[str, Any], label: str) -> None:
    hook_in, hook_out = config.get("hf_hook_point_in"), config.get("hf_hook_point_out")
    if config.get("affine_connection") or (hook_out is not None and hook_out != hook_in):
        raise refuse(
            label,
            "this is a transcoder (it writes another hook point), not an SAE",
            "use an SAE of the release instead",
        )
    if _TRANSCODER.search(where):
        raise refuse(
            where,
            "this is a transcoder folder, not an SAE",
            "use an SAE folder of the release instead",
        )


def _hook(where: str, config: dict[str, Any], label: str) -> HookInfo:
    name = optional_str(config, "hf_hook_point_in", label)
    site = _SITE.search(where)
    if name is None and site is not None:
        name = _SITE_HOOKS[site.group(1)].format(layer=int(site.group(2)))
    return HookInfo(name=name, layer=layer_of(name, where))


FORMAT = SAEFormat(name="gemma_scope_2", files=(WEIGHTS, CONFIG), detect=detect, load=load)
