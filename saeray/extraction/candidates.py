"""Bounded, exactly mergeable "best n per group" sets: the top-k and quantile examples.

A candidate is one context window for one group (a feature, or a feature's activation bin),
ranked by ``(score, position)`` ascending, where the score is a 32-bit integer (see
``top_score`` and ``sample_score``) and the window's corpus position breaks ties. The order
is total, so the kept set is a pure function of the candidates ever offered, whatever the
order or grouping in which they arrive: that is what makes merges associative. Group and
score share one int64 ``key = group << 32 | score`` so that ranking is one integer sort.

The pool keeps its candidates' payload rows (per-token activations, which arrive sparse) in
slots of one preallocated dense array: a merge writes only the rows of newcomers, never
moves the rows of the candidates it keeps, and slots never used cost no memory (their pages
are never touched).
Actors keep pools without payloads only to decide which candidates are worth sending.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from saeray.extraction.sparse_rows import SparseRows

_SCORE_BITS = 32
_WORST_SCORE = 1 << _SCORE_BITS  # above every score: an open group admits anything
_NO_POSITION = np.iinfo(np.int64).max


@dataclass
class Candidates:
    """Flat candidate arrays, one entry per (group, window)."""

    key: np.ndarray  # int64: group << 32 | score, lower score is better
    position: np.ndarray  # int64: the window's corpus position (tie-breaker)
    value: np.ndarray  # float32: the feature's largest activation in the window
    rows: SparseRows | None = None  # the feature on every token of the window

    def __len__(self) -> int:
        return len(self.key)

    @property
    def group(self) -> np.ndarray:
        return self.key >> _SCORE_BITS

    def take(self, index: np.ndarray | slice, *, with_rows: bool = True) -> Candidates:
        rows = self.rows.take(index) if with_rows and self.rows is not None else None
        return Candidates(self.key[index], self.position[index], self.value[index], rows)

    @classmethod
    def build(
        cls, group: np.ndarray, score: np.ndarray, position: np.ndarray, value: np.ndarray
    ) -> Candidates:
        key = (group.astype(np.int64) << _SCORE_BITS) | score.astype(np.int64)
        return cls(key, position.astype(np.int64), value.astype(np.float32))


def top_score(value: np.ndarray) -> np.ndarray:
    """Score for top-k: larger activations first. For positive float32 the IEEE bit pattern
    grows with the value, so the score is exact and order-preserving."""
    return 0xFFFFFFFF - value.astype(np.float32).view(np.uint32).astype(np.int64)


def sample_score(position: np.ndarray, feature: np.ndarray) -> np.ndarray:
    """Score for sampling: a fixed hash of (window, feature), so that keeping the lowest
    scores of a bin is a uniform sample of it that merges exactly (a bottom-k sketch).
    Multiply-xorshift mixing: cheap, and well spread in the top 32 bits it keeps."""
    x = position.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    x ^= feature.astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F)
    x ^= x >> np.uint64(29)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    return (x >> np.uint64(64 - _SCORE_BITS)).astype(np.int64)


def sort_order(key: np.ndarray, position: np.ndarray) -> np.ndarray:
    """The order by (key, position): one integer sort, then positions order exact ties."""
    order = np.argsort(key)
    sorted_key = key[order]
    tied = np.flatnonzero(sorted_key[1:] == sorted_key[:-1])
    if len(tied):
        slots = np.unique(np.concatenate([tied, tied + 1]))
        members = order[slots]
        order[slots] = members[np.lexsort((position[members], key[members]))]
    return order


def ranks_within_groups(sorted_groups: np.ndarray) -> np.ndarray:
    """For group ids sorted ascending, each entry's 0-based rank inside its group."""
    n = len(sorted_groups)
    index = np.arange(n)
    starts = np.ones(n, bool)
    starts[1:] = sorted_groups[1:] != sorted_groups[:-1]
    return index - np.maximum.accumulate(np.where(starts, index, 0))


class CandidatePool:
    """The best ``capacity`` candidates of each of ``n_groups`` groups.

    Kept dense, one row of ``capacity`` entries per group sorted best first (empty entries
    last), so the admission threshold of a group is its last entry and a merge touches only
    the rows of the groups it brings candidates for, never the whole pool. Each group owns
    ``capacity`` row slots; a newcomer takes the slot of the entry it evicts.
    """

    def __init__(self, n_groups: int, capacity: int, width: int | None = None) -> None:
        self.n_groups = n_groups
        self.capacity = capacity
        self.width = width
        shape = (n_groups, capacity)
        self.score = np.full(shape, _WORST_SCORE, np.int64)  # empty: worse than any score
        self.position = np.full(shape, _NO_POSITION, np.int64)
        self.value = np.zeros(shape, np.float32)
        if width is not None:
            self.slot = np.arange(n_groups * capacity, dtype=np.int64).reshape(shape)
            self.rows = np.empty((n_groups * capacity, width), np.float32)

    def __len__(self) -> int:
        return int(self._filled().sum())

    def _filled(self) -> np.ndarray:
        return self.score < _WORST_SCORE

    def admits(self, candidates: Candidates) -> np.ndarray:
        """Which candidates would enter now: a cheap filter before the sort in ``offer``."""
        group = candidates.group
        score = candidates.key & (_WORST_SCORE - 1)
        worst = self.score[group, -1]
        return (score < worst) | (
            (score == worst) & (candidates.position < self.position[group, -1])
        )

    def offer(self, incoming: Candidates) -> np.ndarray:
        """Merge ``incoming`` in; return the indices (into ``incoming``) of those kept."""
        entering = np.flatnonzero(self.admits(incoming))
        if len(entering) == 0:
            return entering
        offered = incoming.take(entering, with_rows=False)  # rows: only those kept
        order = sort_order(offered.key, offered.position)
        group = offered.group[order]
        rank = ranks_within_groups(group)
        useful = rank < self.capacity  # beyond that many newcomers, none of a group is kept
        order, group, rank = order[useful], group[useful], rank[useful]
        first = rank == 0  # group is sorted: each run of one group starts at rank 0
        touched, row = group[first], np.cumsum(first) - 1
        column = self.capacity + rank
        width = int(column.max()) + 1

        # Contenders per touched group: its kept entries, then its newcomers.
        score = np.full((len(touched), width), _WORST_SCORE, np.int64)
        position = np.full((len(touched), width), _NO_POSITION, np.int64)
        origin = np.full((len(touched), width), -1, np.int64)  # newcomer index, or -1
        score[:, : self.capacity] = self.score[touched]
        position[:, : self.capacity] = self.position[touched]
        score[row, column] = offered.key[order] & (_WORST_SCORE - 1)
        position[row, column] = offered.position[order]
        origin[row, column] = order
        best = np.lexsort((position, score), axis=1)[:, : self.capacity]
        origin = np.take_along_axis(origin, best, 1)
        is_new = origin >= 0

        value = np.zeros(score.shape, np.float32)
        value[:, : self.capacity] = self.value[touched]
        value[row, column] = offered.value[order]
        self.score[touched] = np.take_along_axis(score, best, 1)
        self.position[touched] = np.take_along_axis(position, best, 1)
        self.value[touched] = np.take_along_axis(value, best, 1)
        if self.width is not None:
            self._assign_slots(touched, best, is_new, origin, incoming, entering)
        return entering[origin[is_new]]

    def _assign_slots(
        self,
        touched: np.ndarray,
        best: np.ndarray,
        is_new: np.ndarray,
        origin: np.ndarray,
        incoming: Candidates,
        entering: np.ndarray,
    ) -> None:
        """Kept entries keep their slots; newcomers take the slots of the evicted."""
        if incoming.rows is None:
            raise ValueError("a pool that keeps rows needs candidates with rows")
        old_slots = self.slot[touched]
        kept_old = np.where(is_new, -1, best)  # column of the kept old entry, or -1
        still_used = np.zeros(old_slots.shape, bool)
        rows_index, columns = np.nonzero(kept_old >= 0)
        still_used[rows_index, kept_old[rows_index, columns]] = True
        free = np.take_along_axis(old_slots, np.argsort(still_used, axis=1, kind="stable"), 1)
        nth_new = np.cumsum(is_new, axis=1) - 1
        slots = np.where(
            is_new,
            np.take_along_axis(free, np.maximum(nth_new, 0), 1),
            np.take_along_axis(old_slots, np.maximum(kept_old, 0), 1),
        )
        self.slot[touched] = slots
        incoming.rows.take(entering[origin[is_new]]).write_into(self.rows, slots[is_new])

    def positions(self) -> np.ndarray:
        """The corpus positions of every kept candidate."""
        return self.position[self._filled()]

    def candidates(self) -> tuple[Candidates, np.ndarray]:
        """The kept candidates sorted by (group, score, position), without their rows, and
        the slots of their rows in ``self.rows`` (gather only the rows needed)."""
        filled = self._filled()
        group = np.nonzero(filled)[0]
        kept = Candidates(
            (group << _SCORE_BITS) | self.score[filled], self.position[filled], self.value[filled]
        )
        slots = self.slot[filled] if self.width is not None else np.empty(0, np.int64)
        return kept, slots
