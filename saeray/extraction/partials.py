"""Mergeable partial results of an extraction, their merge, and the final per-feature results.

Each actor turns each batch into a ``Partial`` (saeray.extraction.summarize); the driver adds
every partial into one ``FeatureAccumulator`` and finalizes it. Everything merges exactly:
counts, float64 sums, maxima and fixed-edge histograms add or max; top-k and quantile
examples are ``CandidatePool``s under a total order; so the result does not depend on how
the corpus was sharded, on how many actors ran, or on the order partials arrive. Memory is
O(d_sae x (top_k + kept quantile samples) x context_length), never O(tokens).

Definitions (what the tests check against a plain numpy reference):

- counted tokens: every token of every window except special tokens and padding.
- a feature fires on a counted token where its activation z > 0; frequency = firing count /
  counted tokens; max, mean and (population) std are over firing tokens; dead = never fired.
- histogram: firing tokens per bin of ``HISTOGRAM_EDGES`` (log-spaced, fixed in advance).
- a window's value for a feature is the feature's largest activation over the window's
  counted tokens (uncounted tokens read 0).
- top examples: the ``top_k`` windows with the largest value > 0, ties by corpus position.
- quantile examples: firing windows are binned by value on the histogram edges; the bins are
  grouped into ``n_quantiles`` groups of roughly equal window count (delphi's quantiles, at
  bin resolution), and each group yields ``quantile_samples`` windows drawn uniformly by a
  hash of (position, feature), so that labels are not built from the top alone.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from saeray.extraction.candidates import (
    CandidatePool,
    Candidates,
    ranks_within_groups,
    sort_order,
)
from saeray.extraction.tokens import TopTokens

# Bin edges for activation histograms: [0, 1e-3), then 4 bins per decade up to 1e4, then
# [1e4, inf). Fixed before any data is seen, so histograms from any shard add exactly.
HISTOGRAM_EDGES = np.concatenate([[0.0], np.logspace(-3, 4, 29), [np.inf]]).astype(np.float32)
N_BINS = len(HISTOGRAM_EDGES) - 1


@dataclass
class Partial:
    """What one actor reports for one batch of windows; small next to the activations."""

    tokens_seen: int  # every token of every window (not padding): what progress counts
    tokens_counted: int  # tokens that count for statistics
    windows: int
    firing_count: np.ndarray  # int64 [F]
    activation_sum: np.ndarray  # float64 [F], over firing tokens
    activation_sumsq: np.ndarray  # float64 [F]
    activation_max: np.ndarray  # float32 [F], 0 where it never fired
    # int32 [F, N_BINS] (a batch's counts; the merge adds them up in int64):
    histogram: np.ndarray  # firing tokens per activation bin
    window_histogram: np.ndarray  # firing windows per bin of window value
    top: Candidates  # group = feature; only candidates that entered the actor's own top-k
    quantile: Candidates  # group = feature * N_BINS + bin; likewise
    window_positions: np.ndarray  # int64 [u]: the windows the candidates point at
    window_tokens: np.ndarray  # int32 [u, T]
    window_lengths: np.ndarray  # int32 [u]: tokens before the padding
    top_tokens: TopTokens  # per (feature, token) firing counts and sums
    worker: str = ""  # "<node id>/<actor id>", for observing where work ran


class WindowStore:
    """Token ids (and unpadded lengths) of the windows kept candidates point at, by corpus
    position. New windows are appended in chunks; windows no candidate points at any more
    are dropped whenever the store has doubled since it was last compacted, so it holds at
    most about twice what the pools reference."""

    def __init__(self, context_length: int) -> None:
        self.context_length = context_length
        self.chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.size = 0
        self.compacted_size = 0

    def add(self, positions: np.ndarray, tokens: np.ndarray, lengths: np.ndarray) -> None:
        self.chunks.append((positions, tokens, lengths))
        self.size += len(positions)

    def due_for_compaction(self) -> bool:
        return self.size > 2 * self.compacted_size + 1024

    def compact(self, referenced: np.ndarray) -> None:
        """Keep only the referenced windows, as one chunk sorted by position."""
        if not self.chunks:
            return
        positions, tokens, lengths = (np.concatenate(p) for p in zip(*self.chunks, strict=True))
        unique, first = np.unique(positions, return_index=True)
        keep = first[np.isin(unique, referenced)]  # unique is sorted, so keep is in order
        self.chunks = [(positions[keep], tokens[keep], lengths[keep])]
        self.size = self.compacted_size = len(keep)

    def max_token(self) -> int:
        return max((int(tokens.max()) for _, tokens, _ in self.chunks if tokens.size), default=0)

    def lookup(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Token ids [n, T] and lengths [n] of the windows at ``positions``; call after
        ``compact`` (one sorted chunk)."""
        if not self.chunks:
            stored = np.empty(0, np.int64)
            tokens, lengths = np.empty((0, self.context_length), np.int32), np.empty(0, np.int32)
        else:
            assert len(self.chunks) == 1, "compact the store before looking windows up"
            stored, tokens, lengths = self.chunks[0]
        where = np.minimum(np.searchsorted(stored, positions), max(len(stored) - 1, 0))
        if len(positions) and not np.array_equal(stored[where], positions):
            raise RuntimeError("a kept example points at a window the store does not hold")
        if not len(positions):
            return tokens[:0], lengths[:0]
        return tokens[where], lengths[where]


@dataclass
class FeatureExamples:
    """The examples of a range of features, sorted by (feature, rank), ready to save."""

    examples: Candidates  # group = feature
    ranks: np.ndarray
    rows: np.ndarray  # float32 [n, T]: the feature on every token of the window
    tokens: np.ndarray  # int32 [n, T]: the window's token ids
    lengths: np.ndarray  # int32 [n]: tokens before the padding


@dataclass
class ExampleSet:
    """One kind of examples (top or quantile), sorted by (feature, rank). Their rows and
    window tokens are gathered a slice of features at a time, so that saving never holds
    a copy of them all."""

    examples: Candidates  # group = feature; rows not gathered
    ranks: np.ndarray
    slots: np.ndarray  # where each example's row lives in ``rows``
    rows: np.ndarray  # the pool's row storage
    windows: WindowStore

    def features(self, first: int, end: int) -> FeatureExamples:
        """The examples of features first..end-1."""
        lo, hi = np.searchsorted(self.examples.group, (first, end))
        part = self.examples.take(slice(lo, hi))
        tokens, lengths = self.windows.lookup(part.position)
        return FeatureExamples(
            part, self.ranks[lo:hi], self.rows[self.slots[lo:hi]], tokens, lengths
        )


@dataclass
class FeatureResults:
    """Final per-feature statistics (arrays indexed by feature) and examples."""

    tokens_counted: int
    windows: int
    firing_count: np.ndarray
    frequency: np.ndarray
    max_activation: np.ndarray
    mean_activation: np.ndarray
    std_activation: np.ndarray
    histogram: np.ndarray
    top_tokens: TopTokens
    top: ExampleSet  # ranks 0.. by activation
    quantile: ExampleSet  # rank = quantile, 0 the highest-activation one
    workers: dict[str, int] = field(default_factory=dict)  # worker -> tokens it encoded

    @property
    def is_dead(self) -> np.ndarray:
        return self.firing_count == 0


class FeatureAccumulator:
    """The driver's running merge of every partial; O(d_sae x k) memory."""

    def __init__(
        self,
        d_sae: int,
        context_length: int,
        *,
        top_k: int,
        quantile_samples: int,
        tracked_tokens: int,
    ) -> None:
        self.d_sae = d_sae
        self.tokens_seen = self.tokens_counted = self.windows = 0
        self.firing_count = np.zeros(d_sae, np.int64)
        self.activation_sum = np.zeros(d_sae, np.float64)
        self.activation_sumsq = np.zeros(d_sae, np.float64)
        self.activation_max = np.zeros(d_sae, np.float32)
        self.histogram = np.zeros((d_sae, N_BINS), np.int64)
        self.window_histogram = np.zeros((d_sae, N_BINS), np.int64)
        self.top = CandidatePool(d_sae, top_k, width=context_length)
        self.quantile = CandidatePool(d_sae * N_BINS, quantile_samples, width=context_length)
        self.windows_store = WindowStore(context_length)
        self.top_tokens = TopTokens(d_sae, tracked_tokens)
        self.workers: Counter[str] = Counter()  # worker -> tokens it encoded

    def add(self, partial: Partial) -> None:
        self.tokens_seen += partial.tokens_seen
        self.tokens_counted += partial.tokens_counted
        self.windows += partial.windows
        self.firing_count += partial.firing_count
        self.activation_sum += partial.activation_sum
        self.activation_sumsq += partial.activation_sumsq
        np.maximum(self.activation_max, partial.activation_max, out=self.activation_max)
        self.histogram += partial.histogram
        self.window_histogram += partial.window_histogram
        self.top.offer(partial.top)
        self.quantile.offer(partial.quantile)
        self.windows_store.add(
            partial.window_positions, partial.window_tokens, partial.window_lengths
        )
        if self.windows_store.due_for_compaction():
            self.windows_store.compact(self._referenced_windows())
        self.top_tokens.merge(partial.top_tokens)
        if partial.worker:
            self.workers[partial.worker] += partial.tokens_seen

    def _referenced_windows(self) -> np.ndarray:
        return np.union1d(self.top.positions(), self.quantile.positions())

    def finalize(self, n_quantiles: int) -> FeatureResults:
        count = self.firing_count
        fired = np.maximum(count, 1)
        mean = self.activation_sum / fired
        variance = np.maximum(self.activation_sumsq / fired - mean**2, 0.0)
        self.windows_store.compact(self._referenced_windows())
        top, top_slots = self.top.candidates()
        quantile, quantile_slots, quantile_ranks = self._quantile_examples(n_quantiles)
        return FeatureResults(
            tokens_counted=self.tokens_counted,
            windows=self.windows,
            firing_count=count.copy(),
            frequency=count / max(self.tokens_counted, 1),
            max_activation=self.activation_max.copy(),
            mean_activation=np.where(count > 0, mean, 0.0),
            std_activation=np.where(count > 0, np.sqrt(variance), 0.0),
            histogram=self.histogram.copy(),
            top_tokens=self.top_tokens.finished(),
            top=ExampleSet(
                top, ranks_within_groups(top.group), top_slots, self.top.rows, self.windows_store
            ),
            quantile=ExampleSet(
                quantile, quantile_ranks, quantile_slots, self.quantile.rows, self.windows_store
            ),
            workers=dict(self.workers),
        )

    def _quantile_examples(self, n_quantiles: int) -> tuple[Candidates, np.ndarray, np.ndarray]:
        """Group each feature's bins into quantiles by window count; keep the lowest-score
        ``capacity`` samples per (feature, quantile): exact, since each bin kept as many.
        Returns the samples (group = feature), their row slots and their quantile ranks."""
        counts = self.window_histogram
        total = np.maximum(counts.sum(axis=1, keepdims=True), 1)
        before = np.cumsum(counts, axis=1) - counts
        quantile_of_bin = np.minimum(n_quantiles * before // total, n_quantiles - 1)
        pool, slots = self.quantile.candidates()
        feature, bin_index = pool.group // N_BINS, pool.group % N_BINS
        quantile = quantile_of_bin[feature, bin_index]
        score = pool.key & 0xFFFFFFFF
        regrouped = ((feature * n_quantiles + quantile) << 32) | score
        order = sort_order(regrouped, pool.position)
        keep = order[ranks_within_groups(regrouped[order] >> 32) < self.quantile.capacity]
        rank = (n_quantiles - 1) - quantile[keep]
        chosen = pool.take(keep)
        chosen.key = (feature[keep] << 32) | score[keep]
        # Present each feature's samples strongest quantile first, by value within one.
        order = np.lexsort((chosen.position, -chosen.value, rank, chosen.group))
        return chosen.take(order), slots[keep][order], rank[order]
