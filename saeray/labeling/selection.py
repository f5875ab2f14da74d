"""Which features a labeling job labels, frozen when the job is created.

The selection is kept as inclusive index ranges in ``LabelingJob.config["selection"]``,
so a restarted job labels the same features even if ``only_unlabeled`` would now pick
others, and so that 44,000 features stay a few numbers when they are contiguous.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Iterator

from sqlmodel import Session, select

from saeray.db.tables import Feature
from saeray.errors import InvalidInputError

Ranges = list[list[int]]  # [[first, last], ...], inclusive, sorted, disjoint


def parse_ranges(text: str) -> Ranges:
    """``"0-999,1200"`` -> ``[[0, 999], [1200, 1200]]``."""
    indices: list[int] = []
    for part in (piece.strip() for piece in text.split(",")):
        first, dash, last = part.partition("-")
        try:
            low, high = int(first), int(last) if dash else int(first)
        except ValueError:
            raise InvalidInputError(
                f"feature range {part!r} is not N or N-M; write e.g. --features 0-999,1200"
            ) from None
        if low < 0 or high < low:
            raise InvalidInputError(f"feature range {part!r} is empty or negative")
        indices.extend((low, high))
    return compress_pairs(indices)


def compress_pairs(flat_pairs: list[int]) -> Ranges:
    pairs = sorted(zip(flat_pairs[::2], flat_pairs[1::2], strict=True))
    merged: Ranges = []
    for low, high in pairs:
        if merged and low <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], high)
        else:
            merged.append([low, high])
    return merged


def ranges_of(indices: Iterable[int]) -> Ranges:
    ranges: Ranges = []
    for index in sorted(set(indices)):
        if ranges and index == ranges[-1][1] + 1:
            ranges[-1][1] = index
        else:
            ranges.append([index, index])
    return ranges


def count(ranges: Ranges) -> int:
    return sum(high - low + 1 for low, high in ranges)


def expand(ranges: Ranges) -> Iterator[int]:
    for low, high in ranges:
        yield from range(low, high + 1)


def within(indices: Iterable[int], ranges: Ranges) -> list[int]:
    """The indices that fall inside ``ranges``, in their order."""
    lows = [low for low, _ in ranges]
    kept = []
    for index in indices:
        position = bisect_right(lows, index) - 1
        if position >= 0 and index <= ranges[position][1]:
            kept.append(index)
    return kept


def select_features(
    session: Session, extraction_id: str, features: str | None, *, only_unlabeled: bool
) -> Ranges:
    """The live (not dead) features to label, as ranges of their indices."""
    statement = select(Feature.index).where(
        Feature.extraction_id == extraction_id,
        Feature.is_dead == False,  # noqa: E712 - SQL comparison
    )
    if only_unlabeled:
        statement = statement.where(Feature.active_label_id == None)  # noqa: E711
    indices = list(session.exec(statement))
    if features is not None:
        indices = within(indices, parse_ranges(features))
    return ranges_of(indices)
