"""Checked access to the tensors of a weight file, and the weight foldings formats need.

Every tensor is checked as it is read: present, floating point, finite, and of the
shape the publisher's layout implies, with ``d_in`` and ``d_sae`` taken from the biases.
Errors name the file, the tensor, the expected and the found shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from saeray.errors import InvalidInputError


class TensorFile:
    """The tensors of one weight file, read through checks that name the file."""

    def __init__(self, tensors: Mapping[str, Tensor], label: str) -> None:
        self._tensors = dict(tensors)
        self.label = label

    @property
    def names(self) -> list[str]:
        return sorted(self._tensors)

    def __contains__(self, name: str) -> bool:
        return name in self._tensors

    def stored_dtype(self, name: str) -> torch.dtype:
        return self.require(name).dtype

    def require(self, name: str) -> Tensor:
        """The tensor as stored, checked finite; a clear error when it is absent."""
        if name not in self._tensors:
            raise InvalidInputError(
                f"{self.label} has no tensor {name!r} (it has: {', '.join(self.names) or 'none'}); "
                "the file is incomplete or is not in the format it was loaded as"
            )
        tensor = self._tensors[name]
        if not isinstance(tensor, Tensor):
            raise InvalidInputError(f"{name!r} in {self.label} is not a tensor")
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise InvalidInputError(
                f"{name!r} in {self.label} contains NaN or Inf values; the file is corrupt or "
                "its training diverged; re-export the SAE"
            )
        return tensor

    def weight(self, name: str) -> Tensor:
        """A floating-point tensor in a dtype wide enough to fold conventions into."""
        tensor = self.require(name)
        if not tensor.is_floating_point():
            raise InvalidInputError(
                f"{name!r} in {self.label} is {tensor.dtype}, not floating point"
            )
        return tensor.to(torch.promote_types(tensor.dtype, torch.float32))

    def vector(self, name: str, length: int | None = None, meaning: str = "") -> Tensor:
        tensor = self.weight(name)
        if tensor.ndim != 1 or (length is not None and tensor.shape[0] != length):
            expected = f"({length},) = ({meaning},)" if length is not None else "a vector"
            raise InvalidInputError(
                f"{name!r} in {self.label} has shape {tuple(tensor.shape)}; expected {expected}"
            )
        return tensor

    def matrix(self, name: str, shape: tuple[int, int], meaning: str) -> Tensor:
        """A matrix of exactly ``shape`` (as the publisher lays it out), named ``meaning``."""
        tensor = self.weight(name)
        found = tuple(tensor.shape)
        if found != shape:
            hint = ""
            if found == shape[::-1] and shape[0] != shape[1]:
                hint = " (it looks transposed: was the file written by another library?)"
            raise InvalidInputError(
                f"{name!r} in {self.label} has shape {found}; expected {shape} = {meaning} from "
                f"the bias lengths{hint}. The weights do not fit together; check the file, or "
                "pass format= if it is in another library's layout"
            )
        return tensor

    def number(self, name: str) -> float:
        """A one-element tensor (a stored scalar such as ``k`` or a global threshold)."""
        tensor = self.require(name)
        if tensor.numel() != 1:
            raise InvalidInputError(
                f"{name!r} in {self.label} should hold one number; it has shape "
                f"{tuple(tensor.shape)}"
            )
        return tensor.item()


def check_config_dim(config_label: str, key: str, stated: Any, found: int, found_from: str) -> None:
    """Refuse a config whose stated dimension disagrees with the weights."""
    if stated is None:
        return
    if isinstance(stated, bool) or not isinstance(stated, int) or stated != found:
        raise InvalidInputError(
            f"{config_label} says {key}={stated!r} but {found_from} has {found}; the config "
            "and the weights belong to different SAEs: fix the config or use the matching weights"
        )


def positive_number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise InvalidInputError(f"{what} must be a positive number; got {value!r}")
    return float(value)


def fold_decoder_norm(
    W_enc: Tensor, b_enc: Tensor, W_dec: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Give every decoder row unit norm and scale each feature up to match.

    Reconstructions are unchanged; feature ``i`` is multiplied by its decoder norm. This
    is SAELens ``rescale_acts_by_decoder_norm`` (TopK selects on rescaled activations)
    and dictionary_learning's ``normalize_decoder``. Returns the norms too, so thresholds
    that apply to unscaled pre-activations can be scaled alike.
    """
    norms = W_dec.norm(dim=-1)
    # A dead feature (all-zero decoder row) keeps its zero row and gets a zero encoder.
    divisor = torch.where(norms > 0, norms, torch.ones_like(norms))
    return W_enc * norms, b_enc * norms, W_dec / divisor[:, None], norms


def fold_input_scale(
    W_enc: Tensor, W_dec: Tensor, b_dec: Tensor, scale: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Fold a constant input scaling (SAELens ``expected_average_only_in``) into the weights.

    An SAE trained on ``x * scale`` then reads raw ``x`` and reconstructs it in raw
    units; pre-activations (and thus thresholds) are unchanged.
    """
    return W_enc * scale, W_dec / scale, b_dec / scale
