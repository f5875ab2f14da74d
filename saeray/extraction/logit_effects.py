"""Logit effects: the tokens each feature's decoder direction promotes and suppresses.

``W_dec @ W_U`` ([d_sae, vocab]) is the direct effect of a unit of each feature on the
logits, ignoring the layers after the hook and the final norm (as SAEDashboard and
Neuronpedia show it). It is computed in chunks of features, so memory is
O(chunk x vocab), never O(d_sae x vocab).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

_CHUNK_ELEMENTS = 1 << 25  # [chunk, vocab] floats per step: 128 MiB in float32


@dataclass
class LogitEffects:
    """Per feature (rows), the ``n`` most promoted and most suppressed tokens."""

    promoted_ids: np.ndarray  # int64 [d_sae, n], strongest first
    promoted_values: np.ndarray  # float32 [d_sae, n]
    suppressed_ids: np.ndarray
    suppressed_values: np.ndarray  # most negative first


@torch.inference_mode()
def logit_effects(W_dec: torch.Tensor, W_U: torch.Tensor, n: int) -> LogitEffects:
    """``W_dec`` [d_sae, d] (one row per feature) times ``W_U`` [d, vocab]."""
    d_sae, vocab = W_dec.shape[0], W_U.shape[1]
    n = min(n, vocab)
    W_U = W_U.to(device=W_dec.device, dtype=torch.float32)
    chunk = max(1, _CHUNK_ELEMENTS // vocab)
    parts: list[tuple[torch.Tensor, ...]] = []
    for start in range(0, d_sae, chunk):  # chunks of features, each one matmul + topk
        logits = W_dec[start : start + chunk].float() @ W_U
        top = torch.topk(logits, n, dim=1)
        bottom = torch.topk(logits, n, dim=1, largest=False)
        parts.append((top.indices, top.values, bottom.indices, bottom.values))
    promoted_ids, promoted_values, suppressed_ids, suppressed_values = (
        torch.cat(column).cpu().numpy() for column in zip(*parts, strict=True)
    )
    return LogitEffects(promoted_ids, promoted_values, suppressed_ids, suppressed_values)


def compute_logit_effects(
    model: str,
    sae_path: str,
    *,
    sae_format: str | None,
    sae_path_in_repo: str | None,
    sae_revision: str | None,
    n: int,
    device: str,
) -> LogitEffects | None:
    """Load the model's unembedding and the SAE's decoder and compute their effects; None
    when the model has no unembedding (e.g. a BERT encoder) or ``n`` is 0. Meant to run as
    a Ray task, next to the GPUs, not in the driver."""
    from saeray.lm import load_model, unembedding
    from saeray.sae import load_sae

    if n == 0:
        return None
    W_U = unembedding(load_model(model, device=device))
    if W_U is None:
        return None
    sae = load_sae(
        sae_path,
        format=sae_format,
        path_in_repo=sae_path_in_repo,
        revision=sae_revision,
        device=device,
    )
    return logit_effects(sae.W_dec, W_U, n)
