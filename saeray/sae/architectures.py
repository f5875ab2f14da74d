"""One SAE class per architecture, and the registry that names them.

Every class encodes with one matmul against ``W_enc`` followed by an elementwise (or
``torch.topk``) activation; no Python loop touches features. BatchTopK SAEs are saved
for inference as JumpReLU with a threshold, so they load as ``JumpReLUSAE``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from saeray.errors import InvalidInputError
from saeray.sae.base import SAE, check_k


class StandardSAE(SAE):
    """ReLU SAE: ``relu(x @ W_enc + b_enc)``."""

    architecture = "standard"

    def __init__(self, *, b_enc: Tensor, **common: Any) -> None:
        super().__init__(**common)
        self.b_enc = self._feature_vector("b_enc", b_enc)

    def _activate(self, sae_in: Tensor) -> Tensor:
        return torch.relu(sae_in @ self.W_enc + self.b_enc)


class JumpReLUSAE(SAE):
    """JumpReLU SAE: a feature fires with its pre-activation only above its threshold."""

    architecture = "jumprelu"

    def __init__(self, *, b_enc: Tensor, threshold: Tensor, **common: Any) -> None:
        super().__init__(**common)
        self.b_enc = self._feature_vector("b_enc", b_enc)
        self.threshold = self._feature_vector("threshold", threshold)

    def _activate(self, sae_in: Tensor) -> Tensor:
        pre = sae_in @ self.W_enc + self.b_enc
        return torch.relu(pre) * (pre > self.threshold).to(pre.dtype)


class TopKSAE(SAE):
    """TopK SAE: the k largest pre-activations per token, ReLU'd; every other feature is 0.

    Rescaling by decoder norm (SAELens ``rescale_acts_by_decoder_norm``) is folded into
    the weights by the loaders, so it needs no flag here.
    """

    architecture = "topk"

    def __init__(self, *, b_enc: Tensor, k: int, **common: Any) -> None:
        super().__init__(**common)
        self.b_enc = self._feature_vector("b_enc", b_enc)
        if isinstance(k, bool) or not isinstance(k, int):
            raise InvalidInputError(f"k must be an integer; got {k!r}")
        check_k(k, self.d_sae)
        self._k = k

    @property
    def k(self) -> int:
        return self._k

    def _topk(self, sae_in: Tensor, k: int) -> tuple[Tensor, Tensor]:
        values, indices = torch.topk(sae_in @ self.W_enc + self.b_enc, k, dim=-1)
        return torch.relu(values), indices

    def _activate(self, sae_in: Tensor) -> Tensor:
        values, indices = self._topk(sae_in, self.k)
        dense = torch.zeros(
            (*sae_in.shape[:-1], self.d_sae), dtype=values.dtype, device=values.device
        )
        return dense.scatter_(-1, indices, values)

    def encode_topk(self, x: Tensor, k: int | None = None) -> tuple[Tensor, Tensor]:
        """``(values, indices)`` of the active features, without building the dense tensor."""
        k = self.k if k is None else k
        check_k(k, self.d_sae)
        sae_in, _ = self._prepare(x)
        return self._topk(sae_in, k)


class GatedSAE(SAE):
    """Gated SAE: a gate (``b_gate``) decides which features fire, a magnitude path
    sharing ``W_enc`` (scaled by ``exp(r_mag)``, shifted by ``b_mag``) says how much."""

    architecture = "gated"

    def __init__(self, *, b_gate: Tensor, b_mag: Tensor, r_mag: Tensor, **common: Any) -> None:
        super().__init__(**common)
        self.b_gate = self._feature_vector("b_gate", b_gate)
        self.b_mag = self._feature_vector("b_mag", b_mag)
        self.r_mag = self._feature_vector("r_mag", r_mag)

    def _activate(self, sae_in: Tensor) -> Tensor:
        shared = sae_in @ self.W_enc
        gate = (shared + self.b_gate > 0).to(shared.dtype)
        return gate * torch.relu(shared * torch.exp(self.r_mag) + self.b_mag)


ARCHITECTURES: dict[str, type[SAE]] = {
    cls.architecture: cls for cls in (StandardSAE, JumpReLUSAE, TopKSAE, GatedSAE)
}
