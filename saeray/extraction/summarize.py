"""One batch of SAE codes -> one ``Partial``, vectorised, on the codes' device.

The actor never builds a batch's dense [tokens, d_sae] codes: it encodes a chunk of tokens
at a time and keeps only the firing entries (row, feature, value) of each chunk
(``firing_entries``); an SAE fires on a few percent of entries at most. Everything here
works on those entries or on the [windows, d_sae] window maxima. No loop runs over features
or windows.

The actor keeps its own top-k and quantile pools without payloads: a candidate is sent
only if it enters the actor's own pool, which every candidate of the global result must
(it is among the best of everything, so among the best of what this actor saw by then).
After the first batches only a trickle qualifies, so partials stay small.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from saeray.extraction.candidates import CandidatePool, Candidates, sample_score, top_score
from saeray.extraction.partials import HISTOGRAM_EDGES, N_BINS, Partial, bin_of
from saeray.extraction.tokens import TokenCounts, TopTokens


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch single-threaded: summarizing is many small, memory-bound ops, for which
    intra-op threads cost more in synchronisation than they give, worst on a busy machine
    (measured: 2.5x faster on 2 shared cores). The model and the encode keep theirs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def firing_entries(
    codes: torch.Tensor, rows: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(row, feature, value) of every code > 0, for codes [n, d_sae] whose i-th row is the
    token ``rows[i]``. One pass over the codes; best run on a chunk still in cache."""
    d_sae = codes.shape[1]
    flat = codes.reshape(-1)
    where = flat.nonzero().squeeze(1)
    values = flat[where]
    if not bool((values > 0).all()):  # an architecture whose codes can go negative
        where, values = where[values > 0], values[values > 0]
    return rows[where // d_sae], where % d_sae, values.float()


class BatchSummarizer:
    """Turns each batch's activations into a Partial; holds the actor's candidate filters."""

    def __init__(
        self,
        d_sae: int,
        *,
        top_k: int,
        quantile_samples: int,
        tracked_tokens: int,
        worker: str = "",
    ) -> None:
        self.d_sae = d_sae
        self.tracked_tokens = tracked_tokens
        self.worker = worker
        self.top = CandidatePool(d_sae, top_k)
        self.quantile = CandidatePool(d_sae * N_BINS, quantile_samples)
        self.inner_edges = torch.from_numpy(HISTOGRAM_EDGES[1:-1].copy())

    @torch.inference_mode()
    def summarize(
        self,
        activations: torch.Tensor,
        token_ids: np.ndarray,
        counted: np.ndarray,
        positions: np.ndarray,
        lengths: np.ndarray | None = None,
    ) -> Partial:
        """Dense codes [W*T, d_sae] -> Partial (see ``summarize_firing``)."""
        rows = torch.as_tensor(np.flatnonzero(counted), device=activations.device)
        return self.summarize_firing(
            *firing_entries(activations[rows], rows), token_ids, counted, positions, lengths
        )

    @torch.inference_mode()
    def summarize_firing(
        self,
        row: torch.Tensor,
        feature: torch.Tensor,
        values: torch.Tensor,
        token_ids: np.ndarray,
        counted: np.ndarray,
        positions: np.ndarray,
        lengths: np.ndarray | None = None,
    ) -> Partial:
        """The firing entries of a batch -> Partial. An entry is a counted token (``row``, its
        index in the flattened [W, T] batch) where ``feature`` fired with ``values`` (> 0).
        ``token_ids`` [W, T]; ``counted`` [W, T] marks the tokens that count (not special,
        not padding); ``positions`` [W] are the windows' corpus positions, ``lengths`` [W]
        their tokens before the padding (default: no padding)."""
        with _one_thread():
            return self._summarize(row, feature, values, token_ids, counted, positions, lengths)

    def _summarize(
        self,
        row: torch.Tensor,
        feature: torch.Tensor,
        values: torch.Tensor,
        token_ids: np.ndarray,
        counted: np.ndarray,
        positions: np.ndarray,
        lengths: np.ndarray | None,
    ) -> Partial:
        n_windows, context = token_ids.shape
        if lengths is None:
            lengths = np.full(n_windows, context)
        d_sae = self.d_sae
        device = values.device
        values64 = values.double()

        firing_count = torch.bincount(feature, minlength=d_sae)
        activation_sum = torch.bincount(feature, weights=values64, minlength=d_sae)
        activation_sumsq = torch.bincount(feature, weights=values64 * values64, minlength=d_sae)
        bins = torch.bucketize(values, self.inner_edges.to(device), right=True)
        histogram = torch.bincount(feature * N_BINS + bins, minlength=d_sae * N_BINS)

        cell = (row // context) * d_sae + feature  # the entry's (window, feature)
        window_max = torch.zeros(n_windows * d_sae, dtype=values.dtype, device=device)
        window_max.scatter_reduce_(0, cell, values, "amax")

        token_flat = torch.as_tensor(token_ids.reshape(-1).astype(np.int64), device=device)
        top_tokens = TopTokens(
            d_sae, self.tracked_tokens, _token_counts(feature, token_flat[row], values64, d_sae)
        )

        pair_cell = window_max.nonzero().squeeze(1)
        pair_value = window_max[pair_cell].cpu().numpy()
        pair_cell = pair_cell.cpu().numpy()
        pair_window, pair_feature = pair_cell // d_sae, pair_cell % d_sae
        pair_position = positions[pair_window].astype(np.int64)
        pair_bin = bin_of(pair_value)

        top = Candidates.build(pair_feature, top_score(pair_value), pair_position, pair_value)
        top_sent = self.top.offer(top)
        quantile = Candidates.build(
            pair_feature * N_BINS + pair_bin,
            sample_score(pair_position, pair_feature),
            pair_position,
            pair_value,
        )
        quantile_sent = self.quantile.offer(quantile)

        sent_cells = np.concatenate([pair_cell[top_sent], pair_cell[quantile_sent]])
        rows = _rows_of_cells(cell, row, values, sent_cells, n_windows * d_sae, context)
        top, quantile = top.take(top_sent), quantile.take(quantile_sent)
        top.rows, quantile.rows = rows[: len(top)], rows[len(top) :]
        used_windows = np.unique(sent_cells // d_sae)

        return Partial(
            tokens_seen=int(lengths.sum()),
            tokens_counted=int(counted.sum()),
            windows=n_windows,
            firing_count=firing_count.cpu().numpy(),
            activation_sum=activation_sum.cpu().numpy(),
            activation_sumsq=activation_sumsq.cpu().numpy(),
            activation_max=window_max.view(n_windows, d_sae).amax(0).cpu().numpy(),
            histogram=histogram.view(d_sae, N_BINS).cpu().numpy(),
            window_histogram=np.bincount(
                pair_feature * N_BINS + pair_bin, minlength=d_sae * N_BINS
            ).reshape(d_sae, N_BINS),
            top=top,
            quantile=quantile,
            window_positions=positions[used_windows].astype(np.int64),
            window_tokens=token_ids[used_windows].astype(np.int32),
            window_lengths=lengths[used_windows].astype(np.int32),
            top_tokens=top_tokens,
            worker=self.worker,
        )


def _rows_of_cells(
    cell: torch.Tensor,
    row: torch.Tensor,
    values: torch.Tensor,
    wanted: np.ndarray,
    n_cells: int,
    context: int,
) -> np.ndarray:
    """[len(wanted), T]: for each wanted (window, feature) cell, the feature on every token
    of the window, scattered from the firing entries (cell, row, value) rather than gathered
    from the strided dense activations."""
    device = cell.device
    unique, inverse = np.unique(wanted, return_inverse=True)  # a cell can be top and sample
    slot_of_cell = torch.full((n_cells,), -1, dtype=torch.int32, device=device)
    slot_of_cell[torch.as_tensor(unique, device=device)] = torch.arange(
        len(unique), dtype=torch.int32, device=device
    )
    slot = slot_of_cell[cell]
    hit = (slot >= 0).nonzero().squeeze(1)
    rows = torch.zeros(len(unique) * context, dtype=torch.float32, device=device)
    rows[slot[hit].long() * context + row[hit] % context] = values[hit].float()
    return rows.view(len(unique), context).cpu().numpy()[inverse]


def _token_counts(
    feature: torch.Tensor, token: torch.Tensor, values: torch.Tensor, d_sae: int
) -> TokenCounts:
    """Firing count and activation sum per (feature, token) pair: one sort, no hash table.
    The pair is packed in one int32 key when d_sae x vocab allows (a faster sort)."""
    span = int(token.max()) + 1 if len(token) else 1
    narrow = d_sae * span < 2**31
    packed = feature * span + token if narrow else (feature << 32) | token
    keys, order = torch.sort(packed.int() if narrow else packed)
    starts = torch.ones(len(keys), dtype=torch.bool, device=keys.device)
    starts[1:] = keys[1:] != keys[:-1]
    segment = torch.cumsum(starts, 0) - 1
    n_pairs = int(segment[-1]) + 1 if len(keys) else 0
    counts = torch.bincount(segment, minlength=n_pairs)
    totals = torch.zeros(n_pairs, dtype=torch.float64, device=keys.device)
    totals.index_add_(0, segment, values[order])
    unique = keys[starts].cpu().numpy().astype(np.int64)
    features, tokens = divmod(unique, span) if narrow else (unique >> 32, unique & 0xFFFFFFFF)
    return TokenCounts(
        features.astype(np.int32),
        tokens.astype(np.int32),
        counts.cpu().numpy(),
        totals.cpu().numpy(),
    )
