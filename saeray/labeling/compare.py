"""How far two labeling jobs of one extraction agree, and their labels side by side.

Over the features both labeled: exact agreement of normalised labels (case, punctuation
and spacing ignored), mean word overlap (Jaccard of content words), and agreement of the
category path, in full and at its top level.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sqlmodel import Session, select

from saeray.catalogue import get
from saeray.db.tables import Feature, FeatureLabel, LabelingJob
from saeray.errors import InvalidInputError

STOPWORDS = frozenset({"a", "an", "and", "the", "of", "in", "on", "to", "for", "with", "or"})
_WORD = re.compile(r"[\w']+")


def normalise_label(label: str) -> str:
    return " ".join(_WORD.findall(label.lower()))


def label_words(label: str) -> frozenset[str]:
    words = _WORD.findall(label.lower())
    return frozenset(w for w in words if w not in STOPWORDS) or frozenset(words)


def word_overlap(a: str, b: str) -> float:
    left, right = label_words(a), label_words(b)
    union = left | right
    return len(left & right) / len(union) if union else 1.0


def category_levels(category: str | None) -> list[str]:
    return [" ".join(level.lower().split()) for level in (category or "").split(">") if level]


@dataclass(frozen=True)
class ComparedFeature:
    feature_id: int
    feature_index: int
    label_a: str
    label_b: str
    category_a: str | None
    category_b: str | None
    confidence_a: float | None
    confidence_b: float | None
    word_overlap: float
    same_label: bool
    same_category: bool


@dataclass(frozen=True)
class LabelComparison:
    job_a: str
    job_b: str
    features_compared: int
    only_a: int  # labeled by a, not by b
    only_b: int
    exact_agreement: float
    mean_word_overlap: float
    category_agreement: float
    top_category_agreement: float
    rows: list[ComparedFeature] = field(default_factory=list)


def compare_labeling_jobs(
    session: Session, job_a: str, job_b: str, *, limit: int = 100, offset: int = 0
) -> LabelComparison:
    """Agreement of two jobs over the features both labeled, plus ``limit`` rows side by
    side from ``offset``, least word overlap (the disagreements) first."""
    first, second = get(session, LabelingJob, job_a), get(session, LabelingJob, job_b)
    if first.extraction_id != second.extraction_id:
        raise InvalidInputError(
            f"jobs {job_a} and {job_b} label different extractions "
            f"({first.extraction_id}, {second.extraction_id}); compare jobs of one extraction"
        )
    labels_a, labels_b = _labels(session, job_a), _labels(session, job_b)
    common = sorted(labels_a.keys() & labels_b.keys())
    rows = []
    for feature_index in common:
        (feature_id, a), (_, b) = labels_a[feature_index], labels_b[feature_index]
        levels_a, levels_b = category_levels(a.category), category_levels(b.category)
        rows.append(
            ComparedFeature(
                feature_id=feature_id,
                feature_index=feature_index,
                label_a=a.label or "",
                label_b=b.label or "",
                category_a=a.category,
                category_b=b.category,
                confidence_a=a.confidence,
                confidence_b=b.confidence,
                word_overlap=word_overlap(a.label or "", b.label or ""),
                same_label=normalise_label(a.label or "") == normalise_label(b.label or ""),
                same_category=bool(levels_a) and levels_a == levels_b,
            )
        )
    top_level_same = sum(
        bool(category_levels(r.category_a)[:1])
        and category_levels(r.category_a)[:1] == category_levels(r.category_b)[:1]
        for r in rows
    )

    def share(hits: float) -> float:
        return hits / len(rows) if rows else 0.0

    shown = sorted(rows, key=lambda r: (r.word_overlap, r.feature_index))[offset : offset + limit]
    return LabelComparison(
        job_a=job_a,
        job_b=job_b,
        features_compared=len(rows),
        only_a=len(labels_a.keys() - labels_b.keys()),
        only_b=len(labels_b.keys() - labels_a.keys()),
        exact_agreement=share(sum(r.same_label for r in rows)),
        mean_word_overlap=share(sum(r.word_overlap for r in rows)),
        category_agreement=share(sum(r.same_category for r in rows)),
        top_category_agreement=share(top_level_same),
        rows=shown,
    )


def _labels(session: Session, job_id: str) -> dict[int, tuple[int, FeatureLabel]]:
    statement = (
        select(Feature.index, Feature.id, FeatureLabel)
        .join(Feature, Feature.id == FeatureLabel.feature_id)
        .where(FeatureLabel.labeling_job_id == job_id, FeatureLabel.label != None)  # noqa: E711
    )
    return {index: (feature_id, row) for index, feature_id, row in session.exec(statement)}
