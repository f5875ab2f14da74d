"""Activations for training, streamed from Ray Data and never all in memory.

    corpus shards --(WindowReader actor: read + tokenise into windows, flag held-out ones)-->
    windows --(ActivationReaderActor: model up to the hook, special tokens masked out)-->
    activation rows --(driver: iter_batches)--> ShuffleBuffer --> trainer

Held-out windows are chosen by a hash of (seed, document index, window index), so the choice
does not depend on sharding or order; their tokens are kept apart and never trained on.
Shards are read in a seeded random order so that a token budget smaller than the corpus still
samples all of it.

Memory: the driver holds the shuffle buffer (``buffer_tokens`` rows), the held-out rows
(``heldout_tokens``) and one Ray batch in flight, each row ``d_in`` float32s; Ray Data's
backpressure bounds what the actors run ahead.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from hashlib import blake2b

import numpy as np
import torch

from saeray.corpus import (
    CorpusShard,
    WindowConfig,
    WindowTokenizer,
    documents_to_batch,
    list_shards,
    parse_corpus_spec,
    read_shard,
)
from saeray.errors import InvalidInputError


@dataclass(frozen=True)
class StreamConfig:
    model: str  # hub id or local folder
    hook: str  # e.g. blocks.3.hook_resid_post
    dataset: str  # corpus spec, e.g. builtin:python-docs
    text_field: str = "text"
    context_length: int = 128
    windows_per_batch: int = 32  # windows per forward pass of the model
    heldout_fraction: float = 0.05  # of windows, chosen by hash, never trained on
    device: str | None = None  # None: GPU if the actor has one, else CPU
    dtype: str | None = None
    trust_remote_code: bool = False
    threads_per_actor: int | None = None  # torch threads; None: Ray's default (its CPUs)
    seed: int = 0  # which windows are held out


def heldout_mask(
    doc_index: np.ndarray, window_index: np.ndarray, fraction: float, seed: int
) -> np.ndarray:
    """Which windows are held out: a stable hash of (seed, document, window) below
    ``fraction``. The same windows are held out however the corpus is sharded or ordered."""
    if fraction <= 0:
        return np.zeros(len(doc_index), dtype=bool)
    threshold = int(fraction * 2**32)
    keys = (f"{seed}:{doc}:{window}" for doc, window in zip(doc_index, window_index, strict=True))
    hashes = (blake2b(key.encode(), digest_size=4).digest() for key in keys)
    return np.fromiter(
        (int.from_bytes(h, "little") < threshold for h in hashes), dtype=bool, count=len(doc_index)
    )


class WindowReader:
    """Ray Data callable: a batch of shard indices to the windows of those shards."""

    def __init__(self, config: StreamConfig, shards: list[CorpusShard]) -> None:
        self.config = config
        self.shards = shards
        self.windower = WindowTokenizer(
            config.model, WindowConfig(context_length=config.context_length)
        )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        documents = [
            document
            for index in batch["shard_index"].tolist()
            for document in read_shard(self.shards[index])
        ]
        windows = self.windower(documents_to_batch(documents))
        windows["heldout"] = heldout_mask(
            windows["doc_index"],
            windows["window_index"],
            self.config.heldout_fraction,
            self.config.seed,
        )
        return {name: windows[name] for name in ("input_ids", "attention_mask", "heldout")}


class ActivationReaderActor:
    """Ray Data callable: windows to one row per counted token, ``activation`` [n, d_in]
    float32 and ``heldout`` [n]. The model runs only up to the hook."""

    def __init__(self, config: StreamConfig) -> None:
        from saeray.lm import ActivationReader, load_model, special_token_ids

        if config.threads_per_actor is not None:
            torch.set_num_threads(config.threads_per_actor)
        loaded = load_model(
            config.model,
            device=config.device,
            dtype=config.dtype,
            trust_remote_code=config.trust_remote_code,
        )
        self.reader = ActivationReader(loaded, config.hook)
        self.special_ids = special_token_ids(loaded.tokenizer)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from saeray.lm import token_mask

        # Ray hands over read-only arrays; torch wants writable ones.
        ids, attention = batch["input_ids"].copy(), batch["attention_mask"].copy()
        activations = self.reader.read_activations(ids, attention)
        mask = token_mask(ids, attention, self.special_ids)
        rows = activations[torch.as_tensor(mask, device=activations.device)]
        heldout = np.broadcast_to(batch["heldout"][:, None], mask.shape)[mask]
        return {"activation": rows.float().cpu().numpy(), "heldout": heldout}


def activation_dataset(  # noqa: ANN201 - a ray.data.Dataset, imported lazily
    config: StreamConfig, *, gpus_per_actor: float = 0.0, shard_seed: int = 0
):
    """The Ray Dataset of activation rows (lazy; nothing runs until it is iterated), reading
    the corpus shards in the order ``shard_seed`` shuffles them into."""
    import ray

    spec = parse_corpus_spec(config.dataset, text_field=config.text_field)
    shards = list_shards(spec)
    order = list(range(len(shards)))
    random.Random(shard_seed).shuffle(order)
    # Small fractional CPUs so the reader, the model actor and the trainer in the driver
    # all fit on a two-core machine; on a cluster the model actor gets a GPU instead.
    return (
        ray.data.from_items([{"shard_index": index} for index in order])
        .map_batches(
            WindowReader,
            fn_constructor_args=(config, shards),
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=1),
            num_cpus=0.25,
        )
        .map_batches(
            ActivationReaderActor,
            fn_constructor_args=(config,),
            batch_size=config.windows_per_batch,
            compute=ray.data.ActorPoolStrategy(size=1),
            num_cpus=0.5 if gpus_per_actor == 0 else 1,
            num_gpus=gpus_per_actor,
        )
    )


def iter_activations(
    config: StreamConfig, *, gpus_per_actor: float = 0.0, shard_seed: int = 0
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(train_rows, heldout_rows)`` per Ray batch, in stream order, until the corpus ends
    (the caller stops reading once it has what it needs)."""
    dataset = activation_dataset(config, gpus_per_actor=gpus_per_actor, shard_seed=shard_seed)
    for batch in dataset.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=2):
        rows = np.asarray(batch["activation"], dtype=np.float32)
        heldout = np.asarray(batch["heldout"], dtype=bool)
        yield rows[~heldout], rows[heldout]


class ShuffleBuffer:
    """A bounded ring of activation rows sampled at random: a local shuffle buffer, and with
    ``reuse`` > 1 a replay buffer in which each row is drawn ``reuse`` times on average.

    Rows enter with ``add``, which overwrites the oldest once ``capacity`` is reached, and
    earn ``reuse`` draws each; ``batches`` spends the earned draws in random batches (with
    replacement across batches) once the buffer is full, ``drain`` whatever is left once
    the stream has ended. Memory: ``capacity * d_in * 4`` bytes.
    """

    def __init__(self, capacity: int, d_in: int, *, reuse: float = 1.0, seed: int = 0) -> None:
        if capacity < 1 or reuse <= 0:
            raise InvalidInputError(
                f"buffer capacity ({capacity}) and reuse ({reuse}) must be positive"
            )
        self.rows = torch.empty(capacity, d_in)
        self.capacity = capacity
        self.reuse = reuse
        self.size = 0
        self._next = 0
        self._credit = 0.0
        self._generator = torch.Generator().manual_seed(seed)

    @property
    def full(self) -> bool:
        return self.size == self.capacity

    def add(self, rows: np.ndarray | torch.Tensor) -> None:
        rows = torch.as_tensor(rows, dtype=torch.float32)
        if len(rows) > self.capacity:  # only the newest fit; the rest earn no draws
            rows = rows[-self.capacity :]
        end = self._next + len(rows)
        first = min(end, self.capacity) - self._next
        self.rows[self._next : self._next + first] = rows[:first]
        self.rows[: len(rows) - first] = rows[first:]
        self._next = end % self.capacity
        self.size = min(self.capacity, self.size + len(rows))
        self._credit += len(rows) * self.reuse

    def batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        """Random batches worth the draws earned so far; none until the buffer is full, so
        that early batches are not drawn from a few windows."""
        while self.full and self._credit >= batch_size:
            self._credit -= batch_size
            yield self._draw(batch_size)

    def drain(self, batch_size: int, count: int) -> Iterator[torch.Tensor]:
        """``count`` random batches from whatever the buffer holds (the stream has ended)."""
        for _ in range(count if self.size else 0):
            yield self._draw(batch_size)

    def _draw(self, batch_size: int) -> torch.Tensor:
        picks = torch.randint(0, self.size, (batch_size,), generator=self._generator)
        return self.rows[picks]

    def sample(self, count: int) -> torch.Tensor:
        """Up to ``count`` distinct random rows (e.g. to initialise the SAE)."""
        picks = torch.randperm(self.size, generator=self._generator)[:count]
        return self.rows[picks]
