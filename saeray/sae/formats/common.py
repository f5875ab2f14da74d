"""What every format module provides, and the small helpers they share."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from saeray.errors import InvalidInputError
from saeray.sae.base import SAE
from saeray.sae.files import SAEFiles, require
from saeray.sae.io import read_json


@dataclass(frozen=True)
class LoadOptions:
    """Caller choices that change how weights are prepared.

    ``dtype``: the weights' dtype; None keeps the dtype the file stores them in.
    ``norm_scaling_factor``: the input scaling an SAE was trained with, for SAELens
    files with ``normalize_activations: expected_average_only_in`` that do not record it.
    """

    dtype: torch.dtype | None = None
    norm_scaling_factor: float | None = None


@dataclass(frozen=True)
class SAEFormat:
    """A published SAE layout: which files it uses, how to recognise and load a folder."""

    name: str
    files: tuple[str, ...]
    detect: Callable[[SAEFiles], bool]
    load: Callable[[SAEFiles, LoadOptions], SAE]


def finish(sae: SAE, stored_dtype: torch.dtype, options: LoadOptions) -> SAE:
    """Cast once, after every convention has been folded in at float32 or wider."""
    return sae.to(dtype=options.dtype or stored_dtype)


_LAYER = re.compile(r"(?:^|[._/])(?:blocks|layers|layer|h)[._](\d+)(?=$|[._/])")


def layer_of(*names: str | None) -> int | None:
    """The layer a hook name or path mentions (``blocks.8...``, ``layers.8``, ``layer_8``)."""
    for name in names:
        match = _LAYER.search(name or "")
        if match:
            return int(match.group(1))
    return None


def optional_json(files: SAEFiles, name: str) -> dict[str, Any] | None:
    path = files.find(name)
    return None if path is None else read_json(path, f"{files.label}/{name}")


def required_json(files: SAEFiles, name: str, what: str) -> dict[str, Any]:
    return read_json(require(files, name, what), f"{files.label}/{name}")


def optional_str(config: dict[str, Any], key: str, label: str) -> str | None:
    value = config.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidInputError(f"{label}: {key} should be a string; got {value!r}")
    return value


def optional_int(config: dict[str, Any], key: str, label: str) -> int | None:
    value = config.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise InvalidInputError(f"{label}: {key} should be an integer; got {value!r}")
    return value


def refuse(label: str, what: str, fix: str) -> InvalidInputError:
    """An SAE variant this loader does not support, said plainly."""
    return InvalidInputError(f"{label}: {what}, which saeray does not support; {fix}")
