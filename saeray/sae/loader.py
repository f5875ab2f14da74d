"""``load_sae`` and ``describe_sae``: any published SAE, local, on the Hugging Face Hub, or
in a store (``s3://``, ``gs://``, ``file://``)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import torch

from saeray.errors import InvalidInputError
from saeray.sae.base import SAE, SAEInfo
from saeray.sae.files import SAEFiles, folder_of_file, local_folder
from saeray.sae.formats.common import LoadOptions
from saeray.sae.hub import HF_SCHEME, HubFolder, make_ref
from saeray.sae.registry import detect_format, get_format, known_files
from saeray.sae.stored import StoredFolder, is_store_uri

DTypeLike = torch.dtype | str
DeviceLike = torch.device | str


def load_sae(
    source: str | os.PathLike[str],
    *,
    format: str | None = None,
    device: DeviceLike | None = None,
    dtype: DTypeLike | None = None,
    path_in_repo: str | None = None,
    revision: str | None = None,
    norm_scaling_factor: float | None = None,
) -> SAE:
    """Load an SAE from a local folder or file, a Hugging Face repo, or a store.

    ``source``: a local path, ``hf://org/repo[@revision]/path/inside``, a repo id
    with ``path_in_repo=`` (and ``revision=``), or a store URI (``s3://bucket/folder``:
    copied to this machine's cache first). Hub files go through the
    ``huggingface_hub`` cache; with ``HF_HUB_OFFLINE=1`` only cached files are used.
    ``format``: one of ``saeray.sae.FORMATS``; None detects it from the files.
    ``device``: default CPU. ``dtype``: default the dtype the weights are stored in.
    ``norm_scaling_factor``: for SAELens SAEs trained with
    ``expected_average_only_in`` whose folder does not record the factor.
    """
    files = resolve_source(source, path_in_repo=path_in_repo, revision=revision)
    target = _device(device)
    fmt = get_format(format) if format is not None else detect_format(files)
    sae = fmt.load(files, LoadOptions(dtype=_dtype(dtype), norm_scaling_factor=norm_scaling_factor))
    sae.source = files.label
    return sae.to(device=target)


def describe_sae(
    source: str | os.PathLike[str],
    *,
    format: str | None = None,
    path_in_repo: str | None = None,
    revision: str | None = None,
    norm_scaling_factor: float | None = None,
) -> SAEInfo:
    """What the catalogue records about an SAE (loads it on CPU to be sure it loads)."""
    sae = load_sae(
        source,
        format=format,
        device="cpu",
        path_in_repo=path_in_repo,
        revision=revision,
        norm_scaling_factor=norm_scaling_factor,
    )
    return sae.info


def resolve_source(
    source: str | os.PathLike[str], *, path_in_repo: str | None = None, revision: str | None = None
) -> SAEFiles:
    """The folder ``source`` names, on this machine, in a Hugging Face repo or in a store."""
    text = os.fspath(source)
    if is_store_uri(text):
        if path_in_repo is not None or revision is not None:
            raise InvalidInputError(
                f"path_in_repo and revision are for Hugging Face repos, not {text}. Fix: put "
                "the SAE's folder in the address itself"
            )
        return StoredFolder(text)
    if not text.startswith(HF_SCHEME) and path_in_repo is None and revision is None:
        return local_folder(Path(text).expanduser(), known_files())
    ref = make_ref(text, path_in_repo, revision)
    folder = folder_of_file(ref.path_in_repo, known_files())
    if folder is not None:  # the address names a file: load the folder holding it
        ref = replace(ref, path_in_repo=folder)
    return HubFolder(ref)


def _dtype(value: DTypeLike | None) -> torch.dtype | None:
    if value is None or isinstance(value, torch.dtype) and value.is_floating_point:
        return value
    dtype = getattr(torch, str(value).removeprefix("torch."), None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise InvalidInputError(
            f"dtype {value!r} is not a floating-point torch dtype (e.g. float32)"
        )
    return dtype


def _device(value: DeviceLike | None) -> torch.device:
    try:
        device = torch.device("cpu" if value is None else value)
    except (RuntimeError, TypeError) as error:
        raise InvalidInputError(
            f"device {value!r} is not a torch device (e.g. cpu, cuda:0)"
        ) from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError(f"device {value!r} asked for, but CUDA is not available; use cpu")
    return device
