"""Candidates' per-token activation rows, kept as their nonzero entries only.

A candidate's row is the feature's activation on every token of its window; an SAE feature
fires on a few of a window's tokens, so the nonzero entries (token column, value) are ~20x
smaller than the dense float32 row. Actors send rows in this form and the driver's pools
write them into their dense row storage, so the payload between them stays small.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SparseRows:
    """Rows in compressed sparse row layout: row i's entries are ``start[i]:start[i + 1]``."""

    start: np.ndarray  # int64 [n + 1]
    column: np.ndarray  # int16: the token's index in its window
    value: np.ndarray  # float32

    def __len__(self) -> int:
        return len(self.start) - 1

    @classmethod
    def from_entries(
        cls, row: np.ndarray, column: np.ndarray, value: np.ndarray, n: int
    ) -> SparseRows:
        """Rows from (row, column, value) entries sorted by row; rows without one are empty."""
        start = np.zeros(n + 1, np.int64)
        np.cumsum(np.bincount(row, minlength=n), out=start[1:])
        return cls(start, column.astype(np.int16), value.astype(np.float32))

    @classmethod
    def from_dense(cls, dense: np.ndarray) -> SparseRows:
        row, column = np.nonzero(dense)
        return cls.from_entries(row, column, dense[row, column], len(dense))

    def lengths(self) -> np.ndarray:
        return np.diff(self.start)

    def take(self, index: np.ndarray | slice) -> SparseRows:
        """The rows at ``index`` (an index array or a slice), in that order."""
        index = np.arange(len(self))[index]
        lengths = self.lengths()[index]
        start = np.zeros(len(index) + 1, np.int64)
        np.cumsum(lengths, out=start[1:])
        source = np.repeat(self.start[index] - start[:-1], lengths) + np.arange(start[-1])
        return SparseRows(start, self.column[source], self.value[source])

    def write_into(self, dense: np.ndarray, slots: np.ndarray) -> None:
        """Row i becomes ``dense[slots[i]]``, zeros included."""
        dense[slots] = 0.0
        dense[np.repeat(slots, self.lengths()), self.column] = self.value
