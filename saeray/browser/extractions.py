"""Where each extraction stands with labeling: one grouped query for the counts and one
for the labeling jobs, whatever the number of extractions listed."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func
from sqlmodel import Session, select

from saeray.db.tables import Feature, LabelingJob
from saeray.lifecycle import ACTIVE


@dataclass(frozen=True)
class LabelingState:
    status: str  # unlabeled | labeling | partially_labeled | labeled
    features_total: int
    features_labeled: int
    latest_job: LabelingJob | None


def labeling_states(session: Session, extraction_ids: list[str]) -> dict[str, LabelingState]:
    if not extraction_ids:
        return {}
    counts = {
        extraction_id: (total, labeled)
        for extraction_id, total, labeled in session.exec(
            select(Feature.extraction_id, func.count(), func.count(Feature.active_label_id))
            .where(Feature.extraction_id.in_(extraction_ids))  # type: ignore[attr-defined]
            .group_by(Feature.extraction_id)
        )
    }
    jobs: dict[str, list[LabelingJob]] = {extraction_id: [] for extraction_id in extraction_ids}
    for job in session.exec(
        select(LabelingJob)
        .where(LabelingJob.extraction_id.in_(extraction_ids))  # type: ignore[attr-defined]
        .order_by(LabelingJob.created_at.desc())  # type: ignore[attr-defined]
    ):
        jobs[job.extraction_id].append(job)
    states = {}
    for extraction_id in extraction_ids:
        total, labeled = counts.get(extraction_id, (0, 0))
        if any(job.status in ACTIVE for job in jobs[extraction_id]):
            status = "labeling"
        elif total and labeled == total:
            status = "labeled"
        elif labeled:
            status = "partially_labeled"
        else:
            status = "unlabeled"
        latest = jobs[extraction_id][0] if jobs[extraction_id] else None
        states[extraction_id] = LabelingState(status, total, labeled, latest)
    return states
