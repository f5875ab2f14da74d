"""Rows to response bodies, including the parts that take a query (an extraction's SAE
and labeling state, a feature's label history and examples)."""

from __future__ import annotations

from sqlalchemy import Row
from sqlmodel import Session, select

from deployments import schemas
from saeray.artifacts import ArtifactStore
from saeray.browser.extractions import labeling_states
from saeray.browser.features import FeatureRow, label_history
from saeray.db.tables import SAE, ExtractionJob, Feature, JobFields, SAESource
from saeray.examples import read_examples
from saeray.lifecycle import is_terminal
from saeray.submit import kind_of


def source_type(sae: SAE) -> schemas.SourceType:
    return "trained" if sae.source == SAESource.TRAINED else "external"


def sae_out(sae: SAE) -> schemas.SAEOut:
    return schemas.SAEOut.model_validate({**sae.model_dump(), "source_type": source_type(sae)})


def extraction_outs(
    session: Session, extractions: list[ExtractionJob]
) -> list[schemas.ExtractionOut]:
    ids = [extraction.id for extraction in extractions]
    sae_ids = {extraction.sae_id for extraction in extractions}
    saes = {sae.id: sae for sae in session.exec(select(SAE).where(SAE.id.in_(sae_ids)))}  # type: ignore[attr-defined]
    states = labeling_states(session, ids)
    outs = []
    for extraction in extractions:
        sae, state = saes[extraction.sae_id], states[extraction.id]
        latest = state.latest_job
        labeling = schemas.LabelingSummary(
            status=state.status,  # type: ignore[arg-type]
            features_total=state.features_total,
            features_labeled=state.features_labeled,
            latest_job=schemas.LabelingJobBrief.model_validate(latest) if latest else None,
        )
        outs.append(
            schemas.ExtractionOut.model_validate(
                {
                    **extraction.model_dump(),
                    "sae_name": sae.name,
                    "source_type": source_type(sae),
                    "labeling": labeling,
                }
            )
        )
    return outs


STATUS_COLUMNS = ("id", "status", "progress", "error", "created_at", "started_at")
STATUS_COLUMNS += ("finished_at", "heartbeat_at")


def job_status_out(job: JobFields | Row) -> schemas.JobStatusOut:
    """A job's status from its row object, or from a row of just STATUS_COLUMNS."""
    values = {name: getattr(job, name) for name in STATUS_COLUMNS}
    return schemas.JobStatusOut.model_validate(
        values | {"kind": kind_of(values["id"]).name, "terminal": is_terminal(job.status)}
    )


def feature_summary(row: FeatureRow) -> dict:
    feature, label = row.feature, row.label
    return {
        **feature.model_dump(),
        "label": label.label if label else None,
        "category": label.category if label else None,
        "confidence": label.confidence if label else None,
        "flagged": bool(label and label.flagged),
    }


def feature_page(
    extraction_id: str, total: int, rows: list[FeatureRow], limit: int, offset: int
) -> schemas.FeaturePage:
    return schemas.FeaturePage(
        extraction_id=extraction_id,
        total=total,
        limit=limit,
        offset=offset,
        items=[schemas.FeatureSummary.model_validate(feature_summary(row)) for row in rows],
    )


def feature_detail(
    session: Session, feature: Feature, artifacts: ArtifactStore
) -> schemas.FeatureDetail:
    history = label_history(session, feature.id)  # type: ignore[arg-type]
    active = next((label for label in history if label.id == feature.active_label_id), None)
    labels = [
        schemas.LabelOut.model_validate(
            {**label.model_dump(), "active": label.id == feature.active_label_id}
        )
        for label in history
    ]
    examples = [
        schemas.ExampleOut.model_validate(example.as_dict())
        for example in read_examples(artifacts, feature.extraction_id, feature.index)
    ]
    return schemas.FeatureDetail.model_validate(
        {
            **feature_summary(FeatureRow(feature, active)),
            "examples": examples,
            "labels": labels,
        }
    )
