"""Top tokens per feature, and token strings fit for display.

Counting every (feature, token) pair exactly needs d_sae x vocab cells (6144 x 30522 for
MiniLM: far too many), so ``TopTokens`` keeps, per feature, the ``tracked`` most frequent
firing tokens with their firing count and activation sum. Partials carry exact per-batch
pairs; merges add them and, whenever the table has grown to twice that size, trim each
feature back to its ``tracked`` most frequent (ties: lower token id).
The result is exact for every feature that fires on at most ``tracked`` distinct tokens in
the whole run; for a broader feature a token that was trimmed and came back has lost its
earlier counts, so its count and sum are lower bounds, and a low-ranked entry may differ
from the true one. Memory stays O(d_sae x tracked) plus a bounded merge buffer.

"By mean" ranks a feature's tracked tokens by mean activation when firing.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import numpy as np

from saeray.extraction.candidates import ranks_within_groups as _ranks

_FLUSH_AT = 1 << 20  # pending pairs buffered before a merge, so trimming is amortized
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

    @property
    def mean(self) -> np.ndarray:
        return self.total / np.maximum(self.count, 1)


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
        """Add pending pairs in; trim each feature to ``tracked`` tokens once the table holds
        more than ``trim_above`` pairs (default twice the trimmed size: amortized)."""
        if self.pending:
            parts = [self.counts, *self.pending]
            key = np.concatenate([_pack(part.feature, part.token) for part in parts])
            order = np.argsort(key, kind="stable")  # sorted runs: a merge, not a full sort
            key = key[order]
            starts = np.flatnonzero(np.diff(key, prepend=key[:1] - 1) != 0)
            count = np.concatenate([part.count for part in parts])[order]
            total = np.concatenate([part.total for part in parts])[order]
            unique = key[starts]
            self.counts = TokenCounts(
                (unique >> 32).astype(np.int32),
                (unique & 0xFFFFFFFF).astype(np.int32),
                np.add.reduceat(count, starts),
                np.add.reduceat(total, starts),
            )
            self.pending, self.pending_size = [], 0
        limit = 2 * self.d_sae * self.tracked if trim_above is None else trim_above
        if len(self.counts) > limit:
            self.counts = self._trim(self.counts)

    def _trim(self, counts: TokenCounts) -> TokenCounts:
        per_feature = np.bincount(counts.feature, minlength=self.d_sae)
        over = (per_feature > self.tracked)[counts.feature]
        if not over.any():
            return counts
        crowded = np.flatnonzero(over)
        order = crowded[
            _by_count(counts.feature[crowded], counts.count[crowded], counts.token[crowded])
        ]
        kept = order[_ranks(counts.feature[order]) < self.tracked]
        keep = np.sort(np.concatenate([np.flatnonzero(~over), kept]))  # (feature, token) order
        return TokenCounts(
            counts.feature[keep], counts.token[keep], counts.count[keep], counts.total[keep]
        )

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
        keep = order[ranks < n]
        picked = TokenCounts(
            counts.feature[keep], counts.token[keep], counts.count[keep], counts.total[keep]
        )
        return picked, ranks[ranks < n]


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
