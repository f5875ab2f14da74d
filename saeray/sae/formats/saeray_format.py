"""saeray's own format: a SAELens 6.x folder plus ``saeray.json``.

``cfg.json`` + ``sae_weights.safetensors`` (+ ``sparsity.safetensors``) are written as
SAELens 6.x writes them, with every convention already folded in, so SAELens can load
the folder too. ``saeray.json`` marks the folder as saeray's and carries what SAELens
has no field for: the hook layer and saeray's metadata (e.g. training metrics).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from saeray.errors import ConflictError, InvalidInputError
from saeray.sae.base import SAE, HookInfo
from saeray.sae.files import SAEFiles
from saeray.sae.formats import saelens
from saeray.sae.formats.common import (
    LoadOptions,
    SAEFormat,
    optional_int,
    optional_json,
    required_json,
)

MARKER = "saeray.json"
FORMAT_VERSION = 1
# SAELens reads configs without a 6.x sae_lens_version as pre-6.0 ones; this states the
# schema the config follows, so SAELens reads it as written.
SAELENS_SCHEMA_VERSION = "6.0.0"


def detect(files: SAEFiles) -> bool:
    marker = optional_json(files, MARKER)
    return marker is not None and marker.get("format") == "saeray"


def load(files: SAEFiles, options: LoadOptions) -> SAE:
    label = f"{files.label}/{MARKER}"
    marker = required_json(files, MARKER, "the saeray marker")
    version = optional_int(marker, "format_version", label)
    if version is not None and version > FORMAT_VERSION:
        raise InvalidInputError(
            f"{label} is saeray format version {version}; this saeray reads up to "
            f"{FORMAT_VERSION}: upgrade saeray"
        )
    sae = saelens.load_saelens_folder(files, options, format_name="saeray")
    metadata = marker.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise InvalidInputError(f"{label}: metadata should be a JSON object")
    layer = optional_int(marker, "hook_layer", label)
    sae.hook = HookInfo(name=sae.hook.name, layer=layer if layer is not None else sae.hook.layer)
    sae.metadata = metadata
    return sae


def save_sae(
    sae: SAE, folder: str | os.PathLike[str], *, metadata: dict[str, Any] | None = None
) -> Path:
    """Write ``sae`` to a new ``folder`` in saeray's format; returns the folder.

    ``metadata`` (JSON-serialisable, e.g. training metrics) is stored with the SAE's own
    and comes back as ``SAE.metadata``. The folder appears complete or not at all.
    """
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ConflictError(f"{folder} already exists and is not empty; save to a new folder")
    merged = {**sae.metadata, **(metadata or {})}
    marker = {
        "format": "saeray",
        "format_version": FORMAT_VERSION,
        "hook_name": sae.hook.name,
        "hook_layer": sae.hook.layer,
        "model_name": sae.model_name,
        "source_format": sae.format,
        "source": sae.source,
        "metadata": merged,
    }
    try:
        marker_text = json.dumps(marker, indent=2, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise InvalidInputError(f"metadata must be JSON-serialisable (no NaN): {error}") from error

    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        tensors = {name: p.detach().cpu().contiguous() for name, p in sae.named_parameters()}
        save_file(tensors, staging / saelens.WEIGHTS)
        if sae.log_sparsity is not None:
            save_file(
                {"sparsity": sae.log_sparsity.detach().cpu().contiguous()},
                staging / saelens.SPARSITY,
            )
        config_text = json.dumps(_saelens_config(sae), indent=2)
        (staging / saelens.CONFIG).write_text(config_text, encoding="utf-8")
        (staging / MARKER).write_text(marker_text, encoding="utf-8")
        if folder.exists():
            folder.rmdir()  # empty, checked above
        os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def _saelens_config(sae: SAE) -> dict[str, Any]:
    config: dict[str, Any] = {
        "architecture": sae.architecture,
        "d_in": sae.d_in,
        "d_sae": sae.d_sae,
        "dtype": str(sae.dtype).removeprefix("torch."),
        "device": "cpu",
        "apply_b_dec_to_input": sae.apply_b_dec_to_input,
        "normalize_activations": sae.normalize_activations,
        "reshape_activations": "none",
        "metadata": {
            "sae_lens_version": SAELENS_SCHEMA_VERSION,
            "model_name": sae.model_name,
            "hook_name": sae.hook.name,
            "hook_head_index": None,
        },
    }
    if sae.k is not None:
        config["k"] = sae.k
        config["rescale_acts_by_decoder_norm"] = False  # already folded in
    return config


FORMAT = SAEFormat(
    name="saeray",
    files=(MARKER, saelens.CONFIG, saelens.WEIGHTS, saelens.SPARSITY),
    detect=detect,
    load=load,
)
