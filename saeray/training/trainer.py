"""One optimisation step at a time for a TopK SAE, fed batches of raw activations.

What it does each step (after EleutherAI sparsify's trainer):
- normalise the batch by the SAE's fitted input scale;
- loss = FVU + auxk_alpha * auxk loss, where the auxk term only exists while some latents are
  dead (have not fired for ``dead_after_tokens`` tokens);
- project out the decoder-gradient component parallel to each decoder row, step Adam, and
  renormalise decoder rows to unit norm;
- learning rate: linear warm-up, constant, linear decay to zero over the last
  ``decay_fraction`` of the steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from saeray.training.topk import TopKSAE


@dataclass(frozen=True)
class TrainerConfig:
    d_sae: int
    k: int
    lr: float = 3e-3  # Adam; TrainingConfig scales its default with d_sae
    batch_size: int = 4096  # tokens per optimisation step
    auxk_alpha: float = 1 / 32
    auxk_k: int | None = None  # dead latents asked to explain the residual; None: d_in // 2
    dead_after_tokens: int = 10_000_000  # a latent silent this long is dead
    b_dec_init: str = "geometric_median"  # or "mean"
    warmup_steps: int = 20
    decay_fraction: float = 0.2
    seed: int = 0


@dataclass(frozen=True)
class StepStats:
    loss: float
    fvu: float
    auxk_loss: float
    l0: float  # latents with a non-zero activation, per token
    dead_fraction: float
    lr: float

    @property
    def explained_variance(self) -> float:
        return 1.0 - self.fvu


@dataclass(frozen=True)
class EvalStats:
    explained_variance: float
    mse: float  # mean squared error per token, in normalised units
    l0: float
    tokens: int


class TopKTrainer:
    def __init__(
        self, d_in: int, config: TrainerConfig, *, total_steps: int, device: str = "cpu"
    ) -> None:
        self.config = config
        self.total_steps = max(1, total_steps)
        self.device = torch.device(device)
        self.sae = TopKSAE(d_in, config.d_sae, config.k, seed=config.seed).to(self.device)
        self.optimizer = torch.optim.Adam(self.sae.parameters(), lr=config.lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.tokens_since_fired = torch.zeros(config.d_sae, dtype=torch.long, device=self.device)
        self.steps = 0
        self.tokens_trained = 0
        self.initialised = False

    def _lr_factor(self, step: int) -> float:
        warmup = min(1.0, (step + 1) / max(1, self.config.warmup_steps))
        decay_steps = self.config.decay_fraction * self.total_steps
        remaining = self.total_steps - step
        decay = min(1.0, remaining / decay_steps) if decay_steps > 0 else 1.0
        return max(0.0, min(warmup, decay))

    def initialise(self, raw_sample: Tensor) -> None:
        """Fit the input scale and decoder bias on a sample before the first step."""
        self.sae.initialise_from(raw_sample.to(self.device), b_dec_init=self.config.b_dec_init)
        self.initialised = True

    def dead_mask(self) -> Tensor:
        return self.tokens_since_fired >= self.config.dead_after_tokens

    def step(self, raw_batch: Tensor) -> StepStats:
        if not self.initialised:
            self.initialise(raw_batch)
        x = self.sae.normalise(raw_batch.to(self.device))
        dead = self.dead_mask()
        alpha = self.config.auxk_alpha
        out = self.sae(x, dead_mask=dead if alpha > 0 else None, auxk_k=self.config.auxk_k)
        loss = out.fvu + alpha * out.auxk_loss
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.sae.project_decoder_gradient()
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        self.sae.normalise_decoder()

        with torch.no_grad():
            fired = out.code.values > 0
            self.tokens_since_fired += x.shape[0]
            self.tokens_since_fired[out.code.indices[fired]] = 0
        self.steps += 1
        self.tokens_trained += x.shape[0]
        return StepStats(
            loss=float(loss.detach()),
            fvu=float(out.fvu.detach()),
            auxk_loss=float(out.auxk_loss.detach()),
            l0=float(fired.sum()) / x.shape[0],
            dead_fraction=float(dead.float().mean()),
            lr=lr,
        )

    @torch.no_grad()
    def evaluate(self, raw: Tensor, *, batch_size: int = 8192) -> EvalStats:
        """Explained variance over all of ``raw`` (one mean, one total variance), e.g. on
        held-out tokens."""
        mean = self.sae.normalise(raw.to(self.device)).mean(dim=0)
        squared_error = total_variance = nonzero = 0.0
        for chunk in raw.split(batch_size):
            x = self.sae.normalise(chunk.to(self.device))
            code = self.sae.encode(x)
            squared_error += float((x - self.sae.decode(code)).pow(2).sum())
            total_variance += float((x - mean).pow(2).sum())
            nonzero += float((code.values > 0).sum())
        tokens = raw.shape[0]
        return EvalStats(
            explained_variance=1.0 - squared_error / max(total_variance, 1e-12),
            mse=squared_error / max(tokens, 1),
            l0=nonzero / max(tokens, 1),
            tokens=tokens,
        )
