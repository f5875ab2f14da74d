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

import numpy as np
import torch

from saeray.extraction.candidates import CandidatePool, Candidates, sample_score, top_score
from saeray.extraction.partials import HISTOGRAM_EDGES, N_BINS, Partial
from saeray.extraction.sparse_rows import SparseRows
from saeray.extraction.tokens import TokenCounts, TopTokens

_BINS_PER_DECADE = 4
_FIRST_EDGE_EXPONENT = -3  # HISTOGRAM_EDGES[1] == 10 ** -3


def bin_of(values: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """The histogram bin of each positive float32 value: i where edges[i] <= v < edges[i+1].
    Guessed from log10 (several times faster than a binary search), then corrected against
    the edges themselves, so the result is exactly the searchsorted one."""
    guess = torch.floor((torch.log10(values) - _FIRST_EDGE_EXPONENT) * _BINS_PER_DECADE)
    bins = guess.clamp_(-1, N_BINS - 2).long() + 1
    bins -= (values < edges.index_select(0, bins)).long()  # index_select: CPU's fastest gather
    bins += (values >= edges.index_select(0, bins + 1)).long()
    return bins


def firing_entries(
    codes: torch.Tensor, rows: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(row, feature, value) of every code > 0, for codes [n, d_sae] whose i-th row is the
    token ``rows[i]``. One pass over the codes; best run on a chunk still in cache."""
    d_sae = codes.shape[1]
    flat = codes.reshape(-1)
    where = _nonzero_positions(flat)
    values = flat.index_select(0, where)
    if not bool((values > 0).all()):  # an architecture whose codes can go negative
        where, values = where[values > 0], values[values > 0]
    return rows[where // d_sae], where % d_sae, values.float()


def _nonzero_positions(flat: torch.Tensor) -> torch.Tensor:
    """Positions of the nonzero entries of a vector, ascending. A float32 vector on the CPU
    is scanned as int64 pairs (a pair is nonzero where either half is: half the entries to
    test, ~1.5x faster), then each hit pair is split."""
    if flat.dtype != torch.float32 or flat.device.type != "cpu" or len(flat) % 2:
        return flat.nonzero().squeeze(1)
    pairs = flat.view(torch.int64).nonzero().squeeze(1)
    hit, side = (flat.view(-1, 2).index_select(0, pairs) != 0).nonzero().unbind(1)
    return pairs.index_select(0, hit) * 2 + side


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
        self.edges = torch.from_numpy(HISTOGRAM_EDGES.copy())

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
        n_windows, context = token_ids.shape
        if lengths is None:
            lengths = np.full(n_windows, context)
        d_sae = self.d_sae
        device = values.device
        values64 = values.double()

        firing_count = torch.bincount(feature, minlength=d_sae)
        activation_sum = torch.bincount(feature, weights=values64, minlength=d_sae)
        activation_sumsq = torch.bincount(feature, weights=values64 * values64, minlength=d_sae)
        edges = self.edges.to(device)
        histogram = torch.bincount(
            feature * N_BINS + bin_of(values, edges), minlength=d_sae * N_BINS
        )

        # The entry's (window, feature); a lookup of the row's window beats int64 division.
        window_of_row = torch.arange(n_windows, device=device).repeat_interleave(context)
        cell = window_of_row.index_select(0, row) * d_sae + feature
        window_max = torch.zeros(n_windows * d_sae, dtype=values.dtype, device=device)
        window_max.scatter_reduce_(0, cell, values, "amax")

        top_tokens = TopTokens(
            d_sae,
            self.tracked_tokens,
            _token_counts(
                feature.cpu().numpy(), token_ids.reshape(-1)[row.cpu().numpy()], values, d_sae
            ),
        )

        pair_cell = window_max.nonzero().squeeze(1)
        pair_value = window_max[pair_cell]
        pair_bin = bin_of(pair_value, edges).cpu().numpy()
        pair_value, pair_cell = pair_value.cpu().numpy(), pair_cell.cpu().numpy()
        pair_window, pair_feature = pair_cell // d_sae, pair_cell % d_sae
        pair_position = positions[pair_window].astype(np.int64)

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
        top.rows, quantile.rows = rows.take(slice(0, len(top))), rows.take(slice(len(top), None))
        used_windows = np.unique(sent_cells // d_sae)

        return Partial(
            tokens_seen=int(lengths.sum()),
            tokens_counted=int(counted.sum()),
            windows=n_windows,
            firing_count=firing_count.cpu().numpy(),
            activation_sum=activation_sum.cpu().numpy(),
            activation_sumsq=activation_sumsq.cpu().numpy(),
            activation_max=window_max.view(n_windows, d_sae).amax(0).cpu().numpy(),
            histogram=histogram.view(d_sae, N_BINS).int().cpu().numpy(),
            window_histogram=np.bincount(pair_feature * N_BINS + pair_bin, minlength=d_sae * N_BINS)
            .reshape(d_sae, N_BINS)
            .astype(np.int32),
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
) -> SparseRows:
    """For each wanted (window, feature) cell, the feature's firing tokens in the window
    (column, value), picked from the firing entries (cell, row, value)."""
    device = cell.device
    unique, inverse = np.unique(wanted, return_inverse=True)  # a cell can be top and sample
    slot_of_cell = torch.full((n_cells,), -1, dtype=torch.int32, device=device)
    slot_of_cell[torch.as_tensor(unique, device=device)] = torch.arange(
        len(unique), dtype=torch.int32, device=device
    )
    slot = slot_of_cell[cell]
    hit = (slot >= 0).nonzero().squeeze(1)
    slot = slot[hit].cpu().numpy()
    order = np.argsort(slot, kind="stable")  # by slot, each slot's tokens in window order
    column = (row[hit] % context).cpu().numpy()[order]
    value = values[hit].cpu().numpy()[order]
    return SparseRows.from_entries(slot[order], column, value, len(unique)).take(inverse)


def _token_counts(
    feature: np.ndarray, token: np.ndarray, values: torch.Tensor, d_sae: int
) -> TokenCounts:
    """Firing count and activation sum per (feature, token) pair, from one sort. When the
    pair fits in 31 bits, each entry is one int64 key holding the pair above the value's
    float32 bits, so a plain sort (numpy's SIMD one) carries the values along and no
    argsort or gather is needed: several times faster."""
    if len(feature) == 0:
        return TokenCounts.empty()
    value = values.float().cpu().numpy()
    span = int(token.max()) + 1
    packs_in_31_bits = d_sae * span < 2**31
    base = span if packs_in_31_bits else 1 << 32
    pair = feature * base + token
    if packs_in_31_bits:
        keys = np.sort((pair << 32) | value.view(np.uint32).astype(np.int64))
        pair = keys >> 32
        value = (keys & 0xFFFFFFFF).astype(np.uint32).view(np.float32)
    else:
        order = np.argsort(pair)
        pair, value = pair[order], value[order]
    starts = np.flatnonzero(np.diff(pair, prepend=-1))
    features, tokens = divmod(pair[starts], base)
    return TokenCounts(
        features.astype(np.int32),
        tokens.astype(np.int32),
        np.diff(np.append(starts, len(pair))),
        np.add.reduceat(value.astype(np.float64), starts),
    )
