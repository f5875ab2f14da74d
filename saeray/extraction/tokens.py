"""Top tokens per feature, and token strings fit for display.

Counting every (feature, token) pair exactly needs d_sae x vocab cells (6144 x 30522 for
MiniLM: far too many), so ``TopTokens`` keeps, per feature, the ``tracked`` most frequent
firing tokens with their firing count and activation sum. Partials carry exact per-batch
pairs; merges add them and trim each feature that has grown to more than twice ``tracked``
tokens back to its ``tracked`` most frequent (ties: lower token id).
The result is exact for every feature that fires on at most ``tracked`` distinct tokens in
the whole run; for a broader feature a token that was trimmed and came back has lost its
earlier counts, so its count and sum are lower bounds, and a low-ranked entry may differ
from the true one. Memory stays O(d_sae x tracked) plus a bounded merge buffer; a merge
works a range of features at a time, so its temporaries stay small too.

"By mean" ranks a feature's tracked tokens by mean activation when firing.
"""

from __future__ import annotations

import itertools
import unicodedata
from dataclasses import dataclass

import numpy as np

from saeray.extraction.candidates import ranks_within_groups as _ranks

_FLUSH_AT = 1 << 20  # pending pairs buffered before a merge, so trimming is amortized
_MERGE_STEP = 1 << 17  # pairs merged at a time (roughly: a range of features)
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


@dataclass
class TokenCounts:
    """Flat (feature, token) -> firing count and activation sum, sorted by (feature, token)."""

    feature: np.ndarray  # int32
    token: np.ndarray  # int32
    count: np.ndarray  # int64
    total: np.ndarray  # float64

    def __len__(self) -> int:
        return len(self.feature)

    @classmethod
    def empty(cls) -> TokenCounts:
        return cls(np.empty(0, np.int32), np.empty(0, np.int32), np.empty(0, np.int64), np.empty(0))

    @classmethod
    def concat(cls, parts: list[TokenCounts]) -> TokenCounts:
        if not parts:
            return cls.empty()
        columns = zip(*(part.columns() for part in parts), strict=True)
        return cls(*(np.concatenate(column) for column in columns))

    def columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self.feature, self.token, self.count, self.total

    @property
    def mean(self) -> np.ndarray:
        return self.total / np.maximum(self.count, 1)

    def features(self, first: int, end: int) -> TokenCounts:
        """The pairs of features first..end-1 (views, no copy)."""
        lo, hi = np.searchsorted(self.feature, (first, end))
        return TokenCounts(*(column[lo:hi] for column in self.columns()))

    def take(self, index: np.ndarray) -> TokenCounts:
        return TokenCounts(*(column[index] for column in self.columns()))


class TopTokens:
    """The most frequent firing tokens of each feature, with counts and activation sums."""

    def __init__(self, d_sae: int, tracked: int, counts: TokenCounts | None = None) -> None:
        self.d_sae = d_sae
        self.tracked = tracked
        self.counts = counts if counts is not None else TokenCounts.empty()
        self.pending: list[TokenCounts] = []
        self.pending_size = 0

    def merge(self, other: TopTokens) -> None:
        self.pending.extend([other.counts, *other.pending])
        self.pending_size += len(other.counts) + other.pending_size
        if self.pending_size > max(len(self.counts), _FLUSH_AT):
            self.flush()

    def flush(self, trim_above: int | None = None) -> None:
        """Add the pending pairs in, a range of features at a time, and trim each feature
        holding more than ``trim_above`` tokens (default twice ``tracked``: amortized) back
        to its ``tracked`` most frequent."""
        above = 2 * self.tracked if trim_above is None else trim_above
        parts = [self.counts, *self.pending]
        steps = max(1, -(-sum(map(len, parts)) // _MERGE_STEP))
        edges = np.linspace(0, self.d_sae, steps + 1).astype(np.int64)
        self.counts = TokenCounts.concat(
            [
                self._trim(_add_up([part.features(first, end) for part in parts]), above)
                for first, end in itertools.pairwise(edges)
            ]
        )
        self.pending, self.pending_size = [], 0

    def _trim(self, counts: TokenCounts, above: int) -> TokenCounts:
        per_feature = np.bincount(counts.feature, minlength=self.d_sae)
        over = (per_feature > max(above, self.tracked))[counts.feature]
        if not over.any():
            return counts
        crowded = np.flatnonzero(over)
        order = crowded[
            _by_count(counts.feature[crowded], counts.count[crowded], counts.token[crowded])
        ]
        kept = order[_ranks(counts.feature[order]) < self.tracked]
        keep = np.sort(np.concatenate([np.flatnonzero(~over), kept]))  # (feature, token) order
        return counts.take(keep)

    def finished(self) -> TopTokens:
        self.flush(trim_above=0)
        return TopTokens(self.d_sae, self.tracked, self.counts)

    def ranked(self, n: int, by: str) -> tuple[TokenCounts, np.ndarray]:
        """Each feature's best ``n`` tracked tokens by "count" (ties: token id) or by "mean"
        (ties: count, then token id), sorted by (feature, rank); and the ranks."""
        counts = self.finished().counts
        if by == "count":
            order = _by_count(counts.feature, counts.count, counts.token)
        elif by == "mean":
            order = np.lexsort((counts.token, -counts.count, -counts.mean, counts.feature))
        else:
            raise ValueError(f"rank top tokens by 'count' or 'mean', not {by!r}")
        ranks = _ranks(counts.feature[order])
        return counts.take(order[ranks < n]), ranks[ranks < n]


def _add_up(parts: list[TokenCounts]) -> TokenCounts:
    """One pair per (feature, token) of parts each sorted by (feature, token), their counts
    and sums added up; sorted by (feature, token)."""
    parts = [part for part in parts if len(part)]
    if len(parts) <= 1:
        return parts[0] if parts else TokenCounts.empty()
    key = np.concatenate([_pack(part.feature, part.token) for part in parts])
    order = np.argsort(key, kind="stable")  # sorted runs: a merge, not a full sort
    key = key[order]
    starts = np.flatnonzero(np.diff(key, prepend=key[:1] - 1) != 0)
    unique = key[starts]
    return TokenCounts(
        (unique >> 32).astype(np.int32),
        (unique & 0xFFFFFFFF).astype(np.int32),
        np.add.reduceat(np.concatenate([part.count for part in parts])[order], starts),
        np.add.reduceat(np.concatenate([part.total for part in parts])[order], starts),
    )


def _pack(feature: np.ndarray, token: np.ndarray) -> np.ndarray:
    return (feature.astype(np.int64) << 32) | token.astype(np.int64)


def _by_count(feature: np.ndarray, count: np.ndarray, token: np.ndarray) -> np.ndarray:
    """The order by (feature, count descending, token): one sort of packed int64 keys. Counts
    beyond what fits the key's spare bits (at least 2**20) tie, and the token id decides."""
    if len(feature) == 0:
        return np.empty(0, np.int64)
    feature_bits = int(feature.max()).bit_length()
    token_bits = max(int(token.max()).bit_length(), 1)
    count_bits = 63 - feature_bits - token_bits
    if count_bits < 20:
        return np.lexsort((token, -count, feature))
    ceiling = (1 << count_bits) - 1
    inverted = ceiling - np.minimum(count, ceiling)
    high = feature.astype(np.int64) << (count_bits + token_bits)
    return np.argsort(high | (inverted << token_bits) | token.astype(np.int64))


def escape_token(text: str) -> str:
    """A token's text with newlines, tabs, other whitespace except the plain space, control
    and format characters, and backslashes escaped, so every token shows and none breaks a
    line. A leading space stays a space: it is what tells " the" from "the"."""
    out = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif char != " " and (char.isspace() or unicodedata.category(char) in ("Cc", "Cf")):
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return "".join(out)


def vocabulary_strings(tokenizer, vocab_size: int) -> np.ndarray:  # noqa: ANN001
    """Every token id's escaped text (object array), decoded once so that windows and top
    tokens are turned into strings by indexing, not by a decode call per token."""
    known = min(vocab_size, len(tokenizer))
    decoded = tokenizer.batch_decode([[token] for token in range(known)])
    decoded += [f"<id {token}>" for token in range(known, vocab_size)]  # padded embeddings
    return np.array([escape_token(text) for text in decoded], dtype=object)
