"""The SAE module every format loads into, and what its files say about it.

Weights are stored in one orientation whatever the publisher wrote: ``W_enc`` is
``[d_in, d_sae]``, ``W_dec`` is ``[d_sae, d_in]`` (one row per feature), ``b_dec`` is
``[d_in]``. Loaders fold publisher conventions (decoder-norm rescaling, dataset-norm
scaling, finetuning scale) into these tensors, so encoding is one matmul plus an
elementwise activation, the same on every device.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from saeray.errors import InvalidInputError

# Input normalisations applied at encode time (SAELens ``normalize_activations`` values
# that need the activation itself; ``expected_average_only_in`` is a constant and is
# folded into the weights by the loaders).
NORMALIZATIONS = ("none", "constant_norm_rescale", "layer_norm")
LAYER_NORM_EPS = 1e-5


@dataclass(frozen=True)
class HookInfo:
    """Where the SAE reads activations: the hook point as its files name it, and its layer."""

    name: str | None = None
    layer: int | None = None


@dataclass(frozen=True)
class SAEInfo:
    """A loaded SAE summarised for the catalogue and the CLI."""

    format: str
    architecture: str
    d_in: int
    d_sae: int
    hook_name: str | None
    hook_layer: int | None
    model_name: str | None
    k: int | None
    dtype: str
    source: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _frozen(tensor: Tensor) -> nn.Parameter:
    # Parameters (not buffers) so a caller may unfreeze them, but inference needs no grads.
    return nn.Parameter(tensor.detach().clone(), requires_grad=False)


def check_shape(name: str, tensor: Tensor, expected: tuple[int, ...], meaning: str) -> None:
    """Refuse a tensor whose shape is not ``expected``; say which way round it looks."""
    found = tuple(tensor.shape)
    if found == expected:
        return
    hint = ""
    if len(found) == 2 and found == expected[::-1] and found[0] != found[1]:
        hint = " (it looks transposed)"
    raise InvalidInputError(
        f"{name} has shape {found}; expected {expected} = {meaning}{hint}. "
        "The weights do not fit together; load the SAE with the format it was written in."
    )


class SAE(nn.Module):
    """A sparse autoencoder ready for inference: ``encode`` dense features, ``decode`` them back.

    Subclasses (one per architecture) implement ``_activate``: pre-processed input to
    features. Everything else, including metadata, is shared.
    """

    architecture: ClassVar[str]

    def __init__(
        self,
        *,
        W_enc: Tensor,
        W_dec: Tensor,
        b_dec: Tensor,
        apply_b_dec_to_input: bool = False,
        normalize_activations: str = "none",
        hook: HookInfo | None = None,
        model_name: str | None = None,
        format: str = "unknown",
        source: str | None = None,
        metadata: dict[str, Any] | None = None,
        log_sparsity: Tensor | None = None,
    ) -> None:
        super().__init__()
        if W_enc.ndim != 2:
            raise InvalidInputError(
                f"W_enc must be a matrix [d_in, d_sae]; got {tuple(W_enc.shape)}"
            )
        d_in, d_sae = W_enc.shape
        check_shape("W_dec", W_dec, (d_sae, d_in), "(d_sae, d_in)")
        check_shape("b_dec", b_dec, (d_in,), "(d_in,)")
        if normalize_activations not in NORMALIZATIONS:
            raise InvalidInputError(
                f"normalize_activations={normalize_activations!r} is not supported at encode "
                f"time; use one of {', '.join(NORMALIZATIONS)}"
            )
        self.W_enc = _frozen(W_enc)
        self.W_dec = _frozen(W_dec)
        self.b_dec = _frozen(b_dec)
        self.apply_b_dec_to_input = bool(apply_b_dec_to_input)
        self.normalize_activations = normalize_activations
        self.hook = hook or HookInfo()
        self.model_name = model_name
        self.format = format
        self.source = source
        self.metadata: dict[str, Any] = dict(metadata or {})
        if log_sparsity is not None:
            check_shape("log_sparsity", log_sparsity, (d_sae,), "(d_sae,)")
            log_sparsity = log_sparsity.detach().clone()
        # A buffer, so .to() moves it with the weights; None when the files have none.
        self.register_buffer("log_sparsity", log_sparsity)

    def _feature_vector(self, name: str, tensor: Tensor) -> nn.Parameter:
        check_shape(name, tensor, (self.d_sae,), "(d_sae,)")
        return _frozen(tensor)

    # --- shape, dtype, device -------------------------------------------------------------

    @property
    def d_in(self) -> int:
        return self.W_enc.shape[0]

    @property
    def d_sae(self) -> int:
        return self.W_enc.shape[1]

    @property
    def dtype(self) -> torch.dtype:
        return self.W_enc.dtype

    @property
    def device(self) -> torch.device:
        return self.W_enc.device

    @property
    def k(self) -> int | None:
        """Active features per token for TopK SAEs; None for the others."""
        return None

    @property
    def info(self) -> SAEInfo:
        return SAEInfo(
            format=self.format,
            architecture=self.architecture,
            d_in=self.d_in,
            d_sae=self.d_sae,
            hook_name=self.hook.name,
            hook_layer=self.hook.layer,
            model_name=self.model_name,
            k=self.k,
            dtype=str(self.dtype).removeprefix("torch."),
            source=self.source,
        )

    def extra_repr(self) -> str:
        k = f", k={self.k}" if self.k is not None else ""
        return (
            f"architecture={self.architecture}, d_in={self.d_in}, d_sae={self.d_sae}{k}, "
            f"format={self.format}, hook={self.hook.name}"
        )

    # --- encode / decode ------------------------------------------------------------------

    def _prepare(self, x: Tensor) -> tuple[Tensor, Callable[[Tensor], Tensor]]:
        """Input as the encoder sees it, and the map from decoder output back to input units."""
        if x.shape[-1] != self.d_in:
            raise InvalidInputError(
                f"activations have {x.shape[-1]} features in their last dimension but this "
                f"SAE reads {self.d_in} (hook {self.hook.name!r}); hook the point the SAE was "
                "trained on"
            )
        x = x.to(device=self.device, dtype=self.dtype)
        undo: Callable[[Tensor], Tensor] = _identity
        if self.normalize_activations == "constant_norm_rescale":
            coeff = math.sqrt(self.d_in) / x.norm(dim=-1, keepdim=True)
            x = x * coeff

            def undo(out: Tensor) -> Tensor:
                return out / coeff

        elif self.normalize_activations == "layer_norm":
            mu = x.mean(dim=-1, keepdim=True)
            centred = x - mu
            std = centred.std(dim=-1, keepdim=True)
            x = centred / (std + LAYER_NORM_EPS)

            def undo(out: Tensor) -> Tensor:
                return out * std + mu

        if self.apply_b_dec_to_input:
            x = x - self.b_dec
        return x, undo

    def _activate(self, sae_in: Tensor) -> Tensor:
        raise NotImplementedError

    def encode(self, x: Tensor) -> Tensor:
        """Dense feature activations ``[..., d_sae]`` for activations ``[..., d_in]``."""
        sae_in, _ = self._prepare(x)
        return self._activate(sae_in)

    def encode_topk(self, x: Tensor, k: int | None = None) -> tuple[Tensor, Tensor]:
        """The ``k`` largest feature activations per token as ``(values, indices)``."""
        if k is None:
            raise InvalidInputError(f"a {self.architecture} SAE has no k of its own; pass k")
        check_k(k, self.d_sae)
        values, indices = torch.topk(self.encode(x), k, dim=-1)
        return values, indices

    def decode(self, z: Tensor) -> Tensor:
        """Reconstruction ``[..., d_in]`` from features ``[..., d_sae]``.

        With ``constant_norm_rescale`` or ``layer_norm`` input normalisation this is in the
        normalised space; ``forward`` maps it back to the input's units.
        """
        z = z.to(device=self.device, dtype=self.dtype)
        return z @ self.W_dec + self.b_dec

    def forward(self, x: Tensor) -> Tensor:
        """Reconstruct activations in their own units."""
        sae_in, undo = self._prepare(x)
        return undo(self.decode(self._activate(sae_in)))


def _identity(out: Tensor) -> Tensor:
    return out


def check_k(k: int, d_sae: int) -> None:
    if not 1 <= k <= d_sae:
        raise InvalidInputError(f"k={k} is out of range; it must be between 1 and d_sae={d_sae}")
