"""Readers for the file types SAEs ship in, turning every failure into a clear user error."""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from saeray.errors import InvalidInputError
from saeray.sae.tensors import TensorFile


def read_json(path: Path, label: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidInputError(
            f"cannot read {label} as JSON ({error}); the file is corrupt"
        ) from error
    if not isinstance(data, dict):
        raise InvalidInputError(
            f"{label} should hold a JSON object; it holds {type(data).__name__}"
        )
    return data


def read_safetensors(path: Path, label: str) -> TensorFile:
    try:
        return TensorFile(load_file(path, device="cpu"), label)
    except (OSError, SafetensorError) as error:
        raise InvalidInputError(
            f"cannot read {label} as safetensors ({error}); the file is corrupt or truncated"
        ) from error


def read_npz(path: Path, label: str) -> TensorFile:
    try:
        # allow_pickle=False: object arrays would unpickle arbitrary code.
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: np.array(archive[name]) for name in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise InvalidInputError(
            f"cannot read {label} as a numpy .npz of plain arrays ({error})"
        ) from error
    return TensorFile({name: torch.from_numpy(array) for name, array in arrays.items()}, label)


def read_torch_state_dict(path: Path, label: str) -> TensorFile:
    """A ``torch.save``d state dict, loaded with ``weights_only=True`` so no code runs."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise InvalidInputError(
            f"refusing {label}: it holds pickled Python objects other than tensors, and "
            "unpickling them could run arbitrary code. Re-save it as a plain state_dict "
            f"(torch.save(model.state_dict(), ...)). Detail: {str(error).splitlines()[0]}"
        ) from error
    except (OSError, RuntimeError, EOFError) as error:
        raise InvalidInputError(f"cannot read {label} with torch.load ({error})") from error
    if not isinstance(state, dict) or not all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in state.items()
    ):
        raise InvalidInputError(
            f"{label} is not a state_dict of named tensors (top-level keys: "
            f"{sorted(map(str, state))[:8] if isinstance(state, dict) else type(state).__name__})"
        )
    return TensorFile(state, label)
