"""The trainable TopK sparse autoencoder (Gao et al. 2024, "Scaling and evaluating sparse
autoencoders"; EleutherAI sparsify).

It works on *normalised* inputs: raw activations times ``input_scale``, a constant fitted once
so that inputs have unit mean squared norm, which makes one learning rate fit every model and
layer. ``raw_weights`` folds the scale back in, so the SAE that is saved takes raw activations:
since ReLU and TopK commute with a positive scale, dividing both biases by the scale gives
latents in raw units and the same decoder directions.

    pre    = (x - b_dec) @ W_enc.T + b_enc
    z      = the k largest of relu(pre), all others zero
    x_hat  = z @ W_dec + b_dec                      (rows of W_dec have unit norm)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:
    from saeray.sae import TopKSAE as InferenceTopKSAE


class SparseCode(NamedTuple):
    values: Tensor  # (n, k) non-negative activations
    indices: Tensor  # (n, k) latent indices


class ForwardOutput(NamedTuple):
    reconstruction: Tensor  # (n, d_in)
    code: SparseCode
    fvu: Tensor  # fraction of variance unexplained: ||x - x_hat||^2 / ||x - mean(x)||^2
    auxk_loss: Tensor  # the dead latents' reconstruction of the residual, same scale as fvu


@dataclass(frozen=True)
class RawWeights:
    """The SAE in raw activation units, in SAELens orientation (W_enc is d_in x d_sae)."""

    W_enc: Tensor
    b_enc: Tensor
    W_dec: Tensor
    b_dec: Tensor
    k: int


class TopKSAE(nn.Module):
    def __init__(self, d_in: int, d_sae: int, k: int, *, seed: int = 0) -> None:
        super().__init__()
        if not 0 < k <= d_sae:
            raise ValueError(f"k must lie in [1, d_sae={d_sae}], got {k}")
        self.d_in, self.d_sae, self.k = d_in, d_sae, k
        generator = torch.Generator().manual_seed(seed)
        directions = F.normalize(torch.randn(d_sae, d_in, generator=generator), dim=1)
        # Tied initialisation (encoder = decoder transpose) as in Gao et al.: each latent
        # starts by measuring the direction it writes.
        self.W_enc = nn.Parameter(directions.clone())  # (d_sae, d_in)
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.W_dec = nn.Parameter(directions)  # (d_sae, d_in), unit-norm rows
        self.b_dec = nn.Parameter(torch.zeros(d_in))
        self.register_buffer("input_scale", torch.tensor(1.0))

    # --- initialisation from data --------------------------------------------------------

    @torch.no_grad()
    def initialise_from(self, raw_sample: Tensor, *, b_dec_init: str = "geometric_median") -> None:
        """Fit the input scale and centre b_dec on a sample of raw activations."""
        sample = raw_sample.float()
        mean_squared_norm = sample.pow(2).sum(dim=1).mean()
        if not torch.isfinite(mean_squared_norm) or mean_squared_norm <= 0:
            raise ValueError("the activation sample is all zeros or not finite")
        self.input_scale.fill_(float(mean_squared_norm.rsqrt()))
        normalised = sample * self.input_scale
        if b_dec_init == "geometric_median":
            self.b_dec.copy_(geometric_median(normalised))
        elif b_dec_init == "mean":
            self.b_dec.copy_(normalised.mean(dim=0))
        else:
            raise ValueError(f"b_dec_init must be 'geometric_median' or 'mean', not {b_dec_init!r}")

    def normalise(self, raw: Tensor) -> Tensor:
        return raw.float() * self.input_scale

    # --- the autoencoder (normalised units) ----------------------------------------------

    def pre_activations(self, x: Tensor) -> Tensor:
        return F.relu(F.linear(x - self.b_dec, self.W_enc, self.b_enc))

    def encode(self, x: Tensor) -> SparseCode:
        values, indices = self.pre_activations(x).topk(self.k, dim=-1, sorted=False)
        return SparseCode(values, indices)

    def decode(self, code: SparseCode, *, bias: bool = True) -> Tensor:
        # A gather-and-sum over k rows of W_dec, never a dense (n, d_sae) matmul.
        out = F.embedding_bag(code.indices, self.W_dec, per_sample_weights=code.values, mode="sum")
        return out + self.b_dec if bias else out

    def forward(
        self, x: Tensor, *, dead_mask: Tensor | None = None, auxk_k: int | None = None
    ) -> ForwardOutput:
        pre = self.pre_activations(x)
        values, indices = pre.topk(self.k, dim=-1, sorted=False)
        code = SparseCode(values, indices)
        reconstruction = self.decode(code)
        residual = x - reconstruction
        total_variance = (x - x.mean(dim=0)).pow(2).sum().clamp_min(1e-12)
        fvu = residual.pow(2).sum() / total_variance
        auxk_loss = self._auxk_loss(pre, residual, dead_mask, auxk_k, total_variance)
        return ForwardOutput(reconstruction, code, fvu, auxk_loss)

    def _auxk_loss(
        self,
        pre: Tensor,
        residual: Tensor,
        dead_mask: Tensor | None,
        auxk_k: int | None,
        total_variance: Tensor,
    ) -> Tensor:
        """Gao et al. appendix B.1 / sparsify: the top ``auxk_k`` *dead* latents are asked to
        reconstruct what the live ones missed, which gives dead latents a gradient again."""
        num_dead = int(dead_mask.sum()) if dead_mask is not None else 0
        if num_dead == 0:
            return pre.new_zeros(())
        auxk_k = auxk_k or self.d_in // 2
        scale = min(num_dead / auxk_k, 1.0)  # a few dead latents get a gentler push
        dead_pre = pre.masked_fill(~dead_mask, float("-inf"))
        values, indices = dead_pre.topk(min(auxk_k, num_dead), dim=-1, sorted=False)
        # Rows whose dead pre-activations are all -inf cannot occur: ReLU output is >= 0.
        predicted = self.decode(SparseCode(values, indices), bias=False)
        return scale * (predicted - residual.detach()).pow(2).sum() / total_variance

    # --- decoder constraints -------------------------------------------------------------

    @torch.no_grad()
    def normalise_decoder(self) -> None:
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12))

    @torch.no_grad()
    def project_decoder_gradient(self) -> None:
        """Remove the part of each decoder row's gradient that would only change its norm
        (undone by the renormalisation anyway); Adam then moves rows along the sphere."""
        if self.W_dec.grad is None:
            return
        parallel = (self.W_dec.grad * self.W_dec).sum(dim=1, keepdim=True)
        self.W_dec.grad.sub_(parallel * self.W_dec)

    # --- export --------------------------------------------------------------------------

    @torch.no_grad()
    def raw_weights(self) -> RawWeights:
        """The weights with the input scale folded in: they take raw activations and give
        latents in raw units (the normalised latents divided by the scale)."""
        scale = float(self.input_scale)
        return RawWeights(
            W_enc=self.W_enc.detach().T.contiguous().clone(),
            b_enc=(self.b_enc.detach() / scale).clone(),
            W_dec=self.W_dec.detach().clone(),
            b_dec=(self.b_dec.detach() / scale).clone(),
            k=self.k,
        )

    @torch.no_grad()
    def encode_raw(self, raw: Tensor) -> Tensor:
        """Dense latents of raw activations in raw units, what the saved SAE computes."""
        code = self.encode(self.normalise(raw))
        dense = torch.zeros(raw.shape[0], self.d_sae, device=code.values.device)
        return dense.scatter_(1, code.indices, code.values) / self.input_scale


def to_inference_sae(
    sae: TopKSAE,
    *,
    hook: str | None = None,
    model_name: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> InferenceTopKSAE:
    """The trained SAE as saeray's inference module (what ``save_sae`` writes and
    ``load_sae`` reads): raw activations in, latents in raw units out."""
    from saeray.sae import HookInfo
    from saeray.sae import TopKSAE as InferenceTopKSAE

    weights = sae.raw_weights()
    return InferenceTopKSAE(
        W_enc=weights.W_enc,
        b_enc=weights.b_enc,
        W_dec=weights.W_dec,
        b_dec=weights.b_dec,
        k=weights.k,
        apply_b_dec_to_input=True,
        hook=HookInfo(name=hook),
        model_name=model_name,
        format="saeray",
        source="trained",
        metadata=metadata,
    ).cpu()


@torch.no_grad()
def geometric_median(points: Tensor, *, iterations: int = 100, tol: float = 1e-6) -> Tensor:
    """The point minimising the summed Euclidean distance to ``points`` (Weiszfeld's
    algorithm). Robust to the few outlier tokens that pull a mean away from the bulk."""
    median = points.mean(dim=0)
    for _ in range(iterations):
        weights = 1.0 / (points - median).norm(dim=1).clamp_min(1e-8)
        updated = (weights[:, None] * points).sum(dim=0) / weights.sum()
        if (updated - median).norm() <= tol * median.norm().clamp_min(1e-8):
            return updated
        median = updated
    return median
