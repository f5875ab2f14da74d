"""Google DeepMind Gemma Scope (Gemma 2): one ``params.npz`` per SAE folder.

Arrays ``W_enc [d_in, d_sae]``, ``W_dec [d_sae, d_in]``, ``b_enc``, ``b_dec``,
``threshold``; JumpReLU on ``x @ W_enc + b_enc`` with no ``b_dec`` subtraction.
The files carry no config: the layer comes from the path (``layer_12/width_16k/...``)
and, when the repo name is in the path (``gemma-scope-2b-pt-res``), the model (its
Hugging Face id) and the hook (named as SAELens names it for that release) follow.
"""

from __future__ import annotations

import re

from saeray.sae.architectures import JumpReLUSAE
from saeray.sae.base import SAE, HookInfo
from saeray.sae.files import SAEFiles, require
from saeray.sae.formats.common import LoadOptions, SAEFormat, finish, layer_of, refuse
from saeray.sae.io import read_npz
from saeray.sae.tensors import TensorFile

WEIGHTS = "params.npz"
_RELEASE = re.compile(r"gemma-scope-(\d+b)-(pt|it)-(res|mlp|att|transcoders)")
# Hook names as SAELens (TransformerLens) writes them for each Gemma Scope release.
_HOOKS = {
    "res": "blocks.{layer}.hook_resid_post",
    "mlp": "blocks.{layer}.hook_mlp_out",
    "att": "blocks.{layer}.attn.hook_z",
}


def detect(files: SAEFiles) -> bool:
    return files.find(WEIGHTS) is not None


def load(files: SAEFiles, options: LoadOptions) -> SAE:
    path = require(files, WEIGHTS, "the Gemma Scope parameters")
    weights = read_npz(path, f"{files.label}/{WEIGHTS}")
    where = f"{files.label} {path}"
    release = _RELEASE.search(where)
    if release and release.group(3) == "transcoders":
        raise refuse(
            files.label,
            "this is a Gemma Scope transcoder, not an SAE",
            "use an SAE of the release instead",
        )
    layer = layer_of(files.label, str(path))
    hook_name = None
    if release and layer is not None:
        hook_name = _HOOKS[release.group(3)].format(layer=layer)
    sae = jumprelu_from_params(
        weights,
        names=("W_enc", "W_dec", "b_enc", "b_dec", "threshold"),
        hook=HookInfo(name=hook_name, layer=layer),
        model_name=_model_name(release),
        format_name="gemma_scope",
    )
    return finish(sae, weights.stored_dtype(_name(weights, "W_enc")), options)


def _model_name(release: re.Match[str] | None) -> str | None:
    if release is None:
        return None
    size, variant = release.group(1), release.group(2)
    return f"google/gemma-2-{size}{'-it' if variant == 'it' else ''}"


def _name(weights: TensorFile, name: str) -> str:
    # Some copies spell the matrices w_enc / w_dec, as Gemma Scope 2 does.
    return name if name in weights or name.lower() not in weights else name.lower()


def jumprelu_from_params(
    weights: TensorFile,
    *,
    names: tuple[str, str, str, str, str],
    hook: HookInfo,
    model_name: str | None,
    format_name: str,
    metadata: dict[str, object] | None = None,
) -> SAE:
    """A JumpReLU SAE from Gemma Scope tensors named ``names`` (W_enc, W_dec, b_enc, b_dec,
    threshold)."""
    w_enc, w_dec, b_enc, b_dec, threshold = (_name(weights, name) for name in names)
    d_in = weights.vector(b_dec).shape[0]
    d_sae = weights.vector(b_enc).shape[0]
    return JumpReLUSAE(
        W_enc=weights.matrix(w_enc, (d_in, d_sae), "(d_in, d_sae)"),
        W_dec=weights.matrix(w_dec, (d_sae, d_in), "(d_sae, d_in)"),
        b_enc=weights.vector(b_enc),
        b_dec=weights.vector(b_dec),
        threshold=weights.vector(threshold, d_sae, "d_sae"),
        apply_b_dec_to_input=False,
        hook=hook,
        model_name=model_name,
        format=format_name,
        metadata=metadata,
    )


FORMAT = SAEFormat(name="gemma_scope", files=(WEIGHTS,), detect=detect, load=load)
