"""The training loop: a stream of activation chunks -> shuffle buffer -> TopK trainer.

``train_on_stream`` takes any source of ``(train_rows, heldout_rows)`` chunks (numpy,
``[n, d_in]``), one pass per call of ``open_stream(epoch)``; ``train_sae`` plugs in the Ray
Data stream of :mod:`saeray.training.stream`. Held-out rows are collected during the first
pass only (up to ``heldout_tokens``) and never trained on; explained variance on them is
measured once training ends.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from saeray.errors import InvalidInputError
from saeray.training.config import TrainingConfig
from saeray.training.stream import ShuffleBuffer, StreamConfig, iter_activations
from saeray.training.trainer import StepStats, TopKTrainer

log = logging.getLogger(__name__)

Chunk = tuple[np.ndarray, np.ndarray]  # (train rows, held-out rows), each [n, d_in]
INIT_SAMPLE_TOKENS = 16_384  # rows the input scale and b_dec are fitted on
EMA_DECAY = 0.9  # running metrics average over roughly the last ten steps
HISTORY_POINTS = 20  # the loss curve kept in the metrics: about this many points


@dataclass(frozen=True)
class TrainingProgress:
    progress: float  # share of optimisation steps done, in [0, 1]
    tokens_processed: int  # corpus tokens read for training so far
    metrics: dict[str, Any]


@dataclass(frozen=True)
class TrainingResult:
    trainer: TopKTrainer  # its ``sae`` is the trained SAE (normalised units; see topk.py)
    metrics: dict[str, Any]  # final metrics, held-out explained variance and history included


class _RunningMetrics:
    """Exponential moving averages of the step statistics, sampled into a short history."""

    def __init__(self, total_steps: int) -> None:
        self.averages: dict[str, float] = {}
        self.last: StepStats | None = None
        self.history: list[dict[str, float]] = []
        self._every = max(1, total_steps // HISTORY_POINTS)
        self._steps = 0

    def add(self, stats: StepStats) -> None:
        values = {
            "loss": stats.loss,
            "fvu": stats.fvu,
            "explained_variance": stats.explained_variance,
            "auxk_loss": stats.auxk_loss,
            "l0": stats.l0,
        }
        for name, value in values.items():
            previous = self.averages.get(name, value)
            self.averages[name] = EMA_DECAY * previous + (1 - EMA_DECAY) * value
        self.last = stats
        self._steps += 1
        if self._steps == 1 or self._steps % self._every == 0:
            self.history.append({"step": self._steps, **self.snapshot()})

    def snapshot(self) -> dict[str, float]:
        if self.last is None:
            return {}
        return {
            **{name: round(value, 6) for name, value in self.averages.items()},
            "dead_fraction": round(self.last.dead_fraction, 6),
            "lr": self.last.lr,
        }


def train_on_stream(
    open_stream: Callable[[int], Iterable[Chunk]],
    config: TrainingConfig,
    *,
    report: Callable[[TrainingProgress], None] = lambda progress: None,
    device: str = "cpu",
) -> TrainingResult:
    """Train a TopK SAE on ``config.tokens`` streamed training tokens (passes over the
    stream as needed), then measure it on the held-out tokens."""
    run = _Run(config, report, device)
    passes = 0
    while run.tokens_read < config.tokens:
        read_before = run.tokens_read
        for train_rows, heldout_rows in open_stream(passes):
            if passes == 0:
                run.hold_out(heldout_rows)
            run.train_on(train_rows)
            if run.tokens_read >= config.tokens:
                break
        if run.tokens_read == read_before:
            raise InvalidInputError(
                "the corpus gave no training tokens: every window was held out or empty. "
                "Fix: use a larger corpus, or lower heldout_tokens."
            )
        passes += 1
        if run.tokens_read < config.tokens:
            log.info("corpus ended after %d of %d tokens; reading it again",
                     run.tokens_read, config.tokens)  # fmt: skip
    return run.finish(passes)


class _Run:
    """The state of one training run; the trainer and buffer are made once the first rows
    tell the activation width."""

    def __init__(
        self, config: TrainingConfig, report: Callable[[TrainingProgress], None], device: str
    ) -> None:
        self.config = config
        self.report = report
        self.device = device
        self.started = time.monotonic()
        self.total_steps = config.total_steps
        self.running = _RunningMetrics(self.total_steps)
        self.trainer: TopKTrainer | None = None
        self.buffer: ShuffleBuffer | None = None
        self.heldout: list[np.ndarray] = []
        self.heldout_count = 0
        self.tokens_read = 0
        self.streaming_since: float | None = None  # when the first activations arrived

    def hold_out(self, rows: np.ndarray) -> None:
        room = self.config.heldout_tokens - self.heldout_count
        if room > 0 and len(rows):
            self.heldout.append(rows[:room])
            self.heldout_count += len(self.heldout[-1])

    def train_on(self, rows: np.ndarray) -> None:
        rows = rows[: self.config.tokens - self.tokens_read]
        if len(rows) == 0:
            return
        if self.trainer is None:
            self.streaming_since = time.monotonic()
            d_in = rows.shape[1]
            self.trainer = TopKTrainer(
                d_in, self.config.trainer_config(), total_steps=self.total_steps, device=self.device
            )
            capacity = min(self.config.buffer_tokens, self.config.tokens)
            self.buffer = ShuffleBuffer(
                capacity, d_in, reuse=self.config.reuse, seed=self.config.seed
            )
        assert self.buffer is not None
        self.buffer.add(rows)
        self.tokens_read += len(rows)
        self._steps(self.buffer.batches(self.config.batch_size))
        self._publish()

    def finish(self, passes: int) -> TrainingResult:
        trainer, buffer = self.trainer, self.buffer
        assert trainer is not None and buffer is not None
        self._steps(buffer.drain(self.config.batch_size, self.total_steps - trainer.steps))
        metrics = {
            **self.running.snapshot(),
            "steps": trainer.steps,
            "tokens_trained": trainer.tokens_trained,
            **_heldout_metrics(trainer, self.heldout),
            "history": self.running.history,
            "tokens_read": self.tokens_read,
            "passes": passes,
            "input_scale": float(trainer.sae.input_scale),
            "elapsed_s": round(time.monotonic() - self.started, 2),
        }
        return TrainingResult(trainer=trainer, metrics=metrics)

    def _steps(self, batches: Iterable[torch.Tensor]) -> None:
        trainer, buffer = self.trainer, self.buffer
        assert trainer is not None and buffer is not None
        for batch in batches:
            if trainer.steps >= self.total_steps:
                return
            if not trainer.initialised:
                trainer.initialise(buffer.sample(INIT_SAMPLE_TOKENS))
            self.running.add(trainer.step(batch))
            self._publish()

    def _publish(self) -> None:
        assert self.trainer is not None and self.streaming_since is not None
        now = time.monotonic()
        streaming = max(now - self.streaming_since, 1.0)  # no wild rate from the first rows
        metrics = {
            **self.running.snapshot(),
            "steps": self.trainer.steps,
            "total_steps": self.total_steps,
            "tokens_trained": self.trainer.tokens_trained,
            "tokens_per_second": round(self.tokens_read / streaming, 1),  # since the first rows
            "elapsed_s": round(now - self.started, 2),
        }
        progress = min(1.0, self.trainer.steps / self.total_steps)
        self.report(TrainingProgress(progress, self.tokens_read, metrics))


def _heldout_metrics(trainer: TopKTrainer, heldout: list[np.ndarray]) -> dict[str, Any]:
    if not heldout:
        return {"explained_variance_heldout": None, "heldout_tokens": 0}
    stats = trainer.evaluate(torch.from_numpy(np.concatenate(heldout)))
    return {
        "explained_variance_heldout": round(stats.explained_variance, 6),
        "l0_heldout": round(stats.l0, 3),
        "heldout_tokens": stats.tokens,
    }


def train_sae(
    stream: StreamConfig,
    config: TrainingConfig,
    *,
    report: Callable[[TrainingProgress], None] = lambda progress: None,
) -> TrainingResult:
    """Train on activations streamed by Ray Data (``ray.init`` must have run). Activation
    actors get a GPU each where the cluster has GPUs; the trainer runs in this process, on
    its GPU if it has one."""
    import ray

    gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
    device = "cuda" if torch.cuda.is_available() else "cpu"

    def open_stream(epoch: int) -> Iterable[Chunk]:
        # Each pass reads the shards in another order; held-out windows stay the same.
        return iter_activations(stream, gpus_per_actor=gpus, shard_seed=stream.seed + epoch)

    threads = torch.get_num_threads()
    if config.trainer_threads is not None:
        torch.set_num_threads(config.trainer_threads)
    try:
        return train_on_stream(open_stream, config, report=report, device=device)
    finally:
        torch.set_num_threads(threads)
