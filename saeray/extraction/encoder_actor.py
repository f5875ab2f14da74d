"""The Ray Data callable class: windows in, one compact partial out per batch.

Each actor loads the model and the SAE once, then per batch runs the model only up to the
hook (``saeray.lm.ActivationReader`` stops the forward pass there; the blocks above are
dropped from memory) a step of windows at a time, encodes the tokens that count through the
SAE a chunk at a time, keeps the firing codes, and summarizes them into a ``Partial`` on
the same device. The activations never leave the actor; special tokens and padding are
never encoded.

Ray Data may call an actor from several threads at once (``concurrent_batches``): the
forward pass and the encode run concurrently, the summarizing (which updates the actor's
candidate filters) one batch at a time.
"""

from __future__ import annotations

import os
import pickle
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from saeray.extraction.summarize import BatchSummarizer, firing_entries

if TYPE_CHECKING:
    from saeray.lm import ActivationReader

# Fault injection for tests and drills: when this file exists, the next actor that has
# already finished a batch deletes it and dies at once, as a killed worker would.
FAULT_MARKER_ENV = "SAERAY_FAULT_MARKER"
# Corpus position of a window: (document index, window index) in one sortable integer.
WINDOW_BITS = 24


def window_positions(doc_index: np.ndarray, window_index: np.ndarray) -> np.ndarray:
    if len(window_index) and int(np.max(window_index)) >= 1 << WINDOW_BITS:
        raise ValueError(f"a document has more than {1 << WINDOW_BITS} windows; split it")
    return (doc_index.astype(np.int64) << WINDOW_BITS) | window_index.astype(np.int64)


def split_positions(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(doc_index, window_index) of window positions."""
    return positions >> WINDOW_BITS, positions & ((1 << WINDOW_BITS) - 1)


@dataclass(frozen=True)
class Steps:
    """How much of a batch the model and the SAE take at a time."""

    forward_tokens: int | None  # tokens per forward pass (whole windows); None: the batch
    encode_rows: int  # tokens per SAE encode

    @classmethod
    def for_device(cls, device: str) -> Steps:
        """A CPU runs fastest on steps whose tensors stay in its caches and below glibc's
        mmap threshold (their memory is reused, not mapped and faulted in anew): a forward
        pass over 1024 tokens at a time is faster than over a batch of 64 windows of 128,
        and two concurrent batches' memory peaks stay small. A GPU wants big steps."""
        if torch.device(device).type == "cpu":
            return cls(forward_tokens=1024, encode_rows=256)
        return cls(forward_tokens=None, encode_rows=1024)

    def windows_per_forward(self, n_windows: int, context_length: int) -> int:
        if self.forward_tokens is None:
            return max(n_windows, 1)
        return max(self.forward_tokens // context_length, 1)


@dataclass(frozen=True)
class EncoderSpec:
    """What an encoder actor loads and how it summarizes."""

    model: str
    hook: str
    sae_path: str
    sae_format: str | None
    sae_path_in_repo: str | None
    sae_revision: str | None
    d_sae: int
    device: str
    dtype: str | None
    torch_threads: int
    include_special_tokens: bool
    top_k: int
    quantile_samples: int
    tracked_tokens: int


class ExtractionEncoder:
    """``map_batches`` callable: a batch of windows -> a one-row table holding a Partial."""

    def __init__(self, spec: EncoderSpec) -> None:
        import ray

        from saeray.lm import ActivationReader, find_layers, load_model, special_token_ids
        from saeray.sae import load_sae

        torch.set_num_threads(spec.torch_threads)
        self.spec = spec
        loaded = load_model(spec.model, device=spec.device, dtype=spec.dtype)
        self.reader = ActivationReader(loaded, spec.hook)
        _drop_blocks_after(find_layers(loaded.model).blocks, self.reader.hook.layer)
        self.sae = load_sae(
            spec.sae_path,
            format=spec.sae_format,
            path_in_repo=spec.sae_path_in_repo,
            revision=spec.sae_revision,
            device=spec.device,
        )
        self.special_ids = special_token_ids(loaded.tokenizer)
        self.steps = Steps.for_device(spec.device)
        context = ray.get_runtime_context()
        self.summarizer = BatchSummarizer(
            spec.d_sae,
            top_k=spec.top_k,
            quantile_samples=spec.quantile_samples,
            tracked_tokens=spec.tracked_tokens,
            worker=f"{context.get_node_id()}/{context.get_actor_id()}",
        )
        self.summarizing = threading.Lock()
        self.batches_done = 0

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        from saeray.lm import token_mask

        self._maybe_fail()
        input_ids = np.array(batch["input_ids"], dtype=np.int64)  # writable: torch wants it
        attention_mask = np.array(batch["attention_mask"])
        counted = token_mask(
            input_ids,
            attention_mask,
            self.special_ids,
            include_special_tokens=self.spec.include_special_tokens,
        )
        with torch.inference_mode():
            encoded = encode_counted(
                self.reader, self.sae, input_ids, attention_mask, counted, self.steps
            )
            firing = collect_firing(encoded, device=self.spec.device)
            with self.summarizing:
                partial = self.summarizer.summarize_firing(
                    *firing,
                    input_ids,
                    counted,
                    window_positions(batch["doc_index"], batch["window_index"]),
                    attention_mask.sum(axis=1),
                )
                self.batches_done += 1
        payload = pickle.dumps(partial, protocol=pickle.HIGHEST_PROTOCOL)
        return pa.table({"partial": pa.array([payload], type=pa.large_binary())})

    def _maybe_fail(self) -> None:
        marker = os.environ.get(FAULT_MARKER_ENV)
        if not marker or self.batches_done == 0:
            return
        try:
            os.remove(marker)
        except FileNotFoundError:
            return
        os._exit(1)


def encode_counted(
    reader: ActivationReader,
    sae: nn.Module,
    input_ids: np.ndarray,
    attention_mask: np.ndarray,
    counted: np.ndarray,
    steps: Steps,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(rows, codes) of the tokens that count (``counted`` [W, T]), a chunk at a time: rows
    index the flattened [W, T] batch, codes are [len(rows), d_sae]. Only tokens that count
    are encoded at all; neither the batch's activations nor its dense codes exist whole."""
    n_windows, context = input_ids.shape
    step = steps.windows_per_forward(n_windows, context)
    for start in range(0, n_windows, step):
        part = slice(start, start + step)
        rows = np.flatnonzero(counted[part])
        if len(rows) == 0:
            continue
        activations = reader(input_ids[part], attention_mask[part])
        rows_in_part = torch.as_tensor(rows, device=activations.device)
        inputs = activations.reshape(-1, activations.shape[-1])[rows_in_part]
        rows_in_batch = rows_in_part + start * context
        for first in range(0, len(rows), steps.encode_rows):
            chunk = slice(first, first + steps.encode_rows)
            yield rows_in_batch[chunk], sae.encode(inputs[chunk]).float()


def collect_firing(
    encoded: Iterator[tuple[torch.Tensor, torch.Tensor]], device: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(row, feature, value) of every firing code, each chunk's found while in cache."""
    parts = [firing_entries(codes, rows) for rows, codes in encoded]
    if not parts:
        empty = torch.empty(0, dtype=torch.int64, device=device)
        return empty, empty, torch.empty(0, device=device)
    row, feature, value = (torch.cat(part) for part in zip(*parts, strict=True))
    return row, feature, value


def _drop_blocks_after(blocks: nn.ModuleList, layer: int) -> None:
    """Free the blocks above the hook: the forward pass stops before it reaches them."""
    for index in range(layer + 1, len(blocks)):
        blocks[index] = nn.Identity()
