"""Which label a feature shows, manual labels, and labels flagged for human review.

A feature's active label (``Feature.active_label_id``) is one of its label rows: from a
labeling job of the user's choice, for all features or some, or a label typed by a
person. A labeling job makes its labels active where a feature has none yet.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import and_, delete, exists, update
from sqlmodel import Session, col, select

from saeray.catalogue import get
from saeray.db.tables import Feature, FeatureLabel, LabelingJob, LabelSource
from saeray.errors import ConflictError, InvalidInputError
from saeray.labeling.answer import MAX_LABEL_CHARS, AnswerError, normalise_category
from saeray.lifecycle import ACTIVE


def activate_labels(
    session: Session,
    labeling_job_id: str,
    feature_ids: Iterable[int] | None = None,
    *,
    only_unset: bool = False,
) -> int:
    """Make a job's labels the active ones, for all its labeled features or for
    ``feature_ids``; with ``only_unset``, only where a feature has no active label.
    Features the job failed on keep theirs. Returns how many features changed."""
    job = get(session, LabelingJob, labeling_job_id)
    of_job = and_(
        FeatureLabel.labeling_job_id == job.id,
        FeatureLabel.feature_id == Feature.id,
        FeatureLabel.label != None,  # noqa: E711 - SQL comparison
    )
    label_id = select(FeatureLabel.id).where(of_job).scalar_subquery()
    statement = (
        update(Feature)
        .where(Feature.extraction_id == job.extraction_id, exists().where(of_job))
        .values(active_label_id=label_id)
        .execution_options(synchronize_session=False)
    )
    if feature_ids is not None:
        statement = statement.where(col(Feature.id).in_(list(feature_ids)))
    if only_unset:
        statement = statement.where(Feature.active_label_id == None)  # noqa: E711
    changed = session.execute(statement).rowcount
    session.commit()
    return changed


def activate_label(session: Session, label_id: int) -> Feature:
    """Make one label row (of any job, or a manual one) its feature's active label."""
    label = get(session, FeatureLabel, label_id)
    if label.label is None:
        raise ConflictError(f"label {label_id} is a failure record ({label.error}); pick another")
    feature = get(session, Feature, label.feature_id)
    feature.active_label_id = label.id
    session.add(feature)
    session.commit()
    return feature


def set_manual_label(
    session: Session, feature_id: int, label: str, category: str | None = None
) -> FeatureLabel:
    """A person's label for a feature (label_source user, no job); it becomes active."""
    feature = get(session, Feature, feature_id)
    text = " ".join(label.split())
    if not text or len(text) > MAX_LABEL_CHARS:
        raise InvalidInputError(f"a label must have 1-{MAX_LABEL_CHARS} characters")
    if category is not None:
        try:
            category = normalise_category(category)
        except AnswerError as exc:
            raise InvalidInputError(str(exc)) from None
    row = FeatureLabel(
        feature_id=feature.id,  # type: ignore[arg-type]
        label=text,
        category=category,
        label_source=LabelSource.USER,
    )
    session.add(row)
    session.flush()
    feature.active_label_id = row.id
    session.add(feature)
    session.commit()
    session.refresh(row)
    return row


def flagged_labels(
    session: Session,
    *,
    labeling_job_id: str | None = None,
    extraction_id: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[FeatureLabel]:
    """Labels whose confidence fell under their job's threshold, least confident first."""
    if labeling_job_id is None and extraction_id is None:
        raise InvalidInputError("name a labeling job or an extraction to list flagged labels of")
    statement = select(FeatureLabel).where(FeatureLabel.flagged == True)  # noqa: E712
    if labeling_job_id is not None:
        statement = statement.where(FeatureLabel.labeling_job_id == labeling_job_id)
    if extraction_id is not None:
        statement = statement.join(Feature, Feature.id == FeatureLabel.feature_id).where(
            Feature.extraction_id == extraction_id
        )
    statement = statement.order_by(col(FeatureLabel.confidence), col(FeatureLabel.id))
    return list(session.exec(statement.offset(offset).limit(limit)))


def delete_labeling_job(session: Session, labeling_job_id: str) -> None:
    """Delete a job and its labels; features showing one of them show none afterwards."""
    job = get(session, LabelingJob, labeling_job_id)
    if job.status in ACTIVE:
        raise ConflictError(f"labeling job {job.id} is {job.status}; cancel it before deleting")
    label_ids = select(FeatureLabel.id).where(FeatureLabel.labeling_job_id == job.id)
    session.execute(
        update(Feature)
        .where(col(Feature.active_label_id).in_(label_ids))
        .values(active_label_id=None)
        .execution_options(synchronize_session=False)
    )
    session.execute(delete(FeatureLabel).where(col(FeatureLabel.labeling_job_id) == job.id))
    session.delete(job)
    session.commit()
