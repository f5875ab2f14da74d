"""What a labeler sees of a feature: its statistics, top tokens and examples.

Examples are read from the extraction's Parquet buckets one bucket at a time (one file
read per 256 features, not one per feature), as the driver needs them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import groupby

from sqlmodel import Session, select

from saeray.artifacts import ArtifactStore
from saeray.db.tables import Feature
from saeray.examples import BUCKET_SIZE, Example, bucket_path


@dataclass(frozen=True)
class FeatureStats:
    feature_id: int
    index: int
    frequency: float
    firing_count: int
    max_activation: float
    mean_activation: float
    std_activation: float
    top_tokens: dict


@dataclass(frozen=True)
class FeatureEvidence:
    stats: FeatureStats
    examples: list[Example]  # top (max-activating) examples first, then quantile examples

    @property
    def scale(self) -> float:
        """The activation that maps to 10 when activations are shown on 0-10."""
        peak = max((max(e.activations, default=0.0) for e in self.examples), default=0.0)
        return max(peak, self.stats.max_activation, 1e-9)

    def top_tokens(self, limit: int = 10) -> list[tuple[str, float]]:
        """The feature's top tokens with their weights, strongest first: from the
        extraction's ``top_tokens`` ({"tokens": [...], "values": [...]}) when it has them,
        else tallied from where the max-activating examples fire."""
        stored = self.stats.top_tokens or {}
        tokens = stored.get("tokens") or []
        if tokens:
            values = stored.get("values") or [0.0] * len(tokens)
            return list(zip(tokens, values, strict=False))[:limit]
        tally: dict[str, float] = defaultdict(float)
        for example in self.examples:
            if example.kind == "top":
                for token, activation in zip(example.tokens, example.activations, strict=False):
                    if activation > 0:
                        tally[token] += activation
        return sorted(tally.items(), key=lambda pair: -pair[1])[:limit]


def feature_stats(
    session: Session, extraction_id: str, indices: Iterable[int] | None = None
) -> list[FeatureStats]:
    """The stats of an extraction's features (those in ``indices`` if given), by index."""
    columns = (
        Feature.id,
        Feature.index,
        Feature.frequency,
        Feature.firing_count,
        Feature.max_activation,
        Feature.mean_activation,
        Feature.std_activation,
        Feature.top_tokens,
    )
    statement = select(*columns).where(Feature.extraction_id == extraction_id)
    rows = [FeatureStats(*row) for row in session.exec(statement.order_by(Feature.index))]
    if indices is None:
        return rows
    wanted = set(indices)
    return [row for row in rows if row.index in wanted]


def load_evidence(
    store: ArtifactStore, extraction_id: str, features: Iterable[FeatureStats]
) -> Iterator[FeatureEvidence]:
    """Evidence for each feature, in the order given (sorted by index reads each bucket
    once); a feature with no examples comes with an empty list."""
    for bucket, members in groupby(features, key=lambda stats: stats.index // BUCKET_SIZE):
        examples = read_bucket(store, extraction_id, bucket)
        for stats in members:
            yield FeatureEvidence(stats, examples.get(stats.index, []))


def read_bucket(store: ArtifactStore, extraction_id: str, bucket: int) -> dict[int, list[Example]]:
    path = bucket_path(extraction_id, bucket * BUCKET_SIZE)
    if not store.exists(path):
        return {}
    grouped: dict[int, list[Example]] = defaultdict(list)
    for row in store.read_table(path).to_pylist():
        grouped[row["feature_index"]].append(Example(**row))
    return grouped
