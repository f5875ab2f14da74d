"""Labeling: start a run (or a rerun of some features), estimate its cost first, follow,
cancel, compare two runs, pick whose labels are shown, review flagged labels."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Query, status
from sqlalchemy import exists
from sqlmodel import Session, col, select

from deployments.deps import PageDep, Services, ServicesDep, SessionDep
from deployments.routes import errors
from deployments.schemas import (
    ActivateIn,
    ActivateOut,
    LabelingConfigIn,
    LabelingJobOut,
    LabelOut,
    RelabelIn,
)
from saeray import catalogue
from saeray.db.tables import ExtractionJob, Feature, FeatureLabel, LabelingJob
from saeray.errors import InvalidInputError
from saeray.labeling import (
    CostEstimate,
    LabelComparison,
    LabelingConfig,
    activate_labels,
    compare_labeling_jobs,
    create_labeling_job,
    delete_labeling_job,
    estimate_labeling_cost,
    flagged_labels,
)
from saeray.labeling.selection import parse_ranges, ranges_of, within
from saeray.submit import cancel_job, reconcile, submit_job

router = APIRouter(tags=["labeling"], responses=errors(400, 401, 422))

EXTRACTION = "/extractions/{extraction_id}"


def config_of(body: Any, *, exclude: set[str] | None = None) -> LabelingConfig:
    return LabelingConfig.from_dict(body.model_dump(exclude_unset=True, exclude=exclude))


def start(
    session: Session, services: Services, extraction_id: str, config: LabelingConfig
) -> LabelingJob:
    """Write the queued row, then hand it to Ray."""
    job = create_labeling_job(session, extraction_id, config)
    submit_job(session, job, services.backend, services.settings)
    return job


@router.post(
    f"{EXTRACTION}/label-features",
    response_model=LabelingJobOut,
    status_code=status.HTTP_202_ACCEPTED,
    responses=errors(404, 409, 503),
)
def label_features(
    extraction_id: str,
    body: LabelingConfigIn,
    session: SessionDep,
    services: ServicesDep,  # type: ignore[valid-type]
) -> LabelingJob:
    """Label a completed extraction's live features (all, ``features``, or only those
    without a label) as a Ray job. Runs any number of times, with other providers,
    models or prompts; each run keeps its own labels."""
    return start(session, services, extraction_id, config_of(body))


def relabel_targets(session: Session, extraction_id: str, target: str) -> list[int]:
    statement = select(Feature.index).where(Feature.extraction_id == extraction_id)
    if target == "flagged":
        active = FeatureLabel.id == Feature.active_label_id
        statement = statement.join(FeatureLabel, active).where(col(FeatureLabel.flagged).is_(True))
    elif target == "failed":
        failed = exists().where(
            FeatureLabel.feature_id == Feature.id,
            col(FeatureLabel.label).is_(None),
        )
        statement = statement.where(col(Feature.active_label_id).is_(None), failed)
    return list(session.exec(statement))


@router.post(
    f"{EXTRACTION}/relabel",
    response_model=LabelingJobOut,
    status_code=status.HTTP_202_ACCEPTED,
    responses=errors(404, 409, 503),
)
def relabel(
    extraction_id: str,
    body: RelabelIn,
    session: SessionDep,
    services: ServicesDep,  # type: ignore[valid-type]
) -> LabelingJob:
    """Label again the features whose active label is flagged, that failed, or all, as a
    new run. Its labels become active only where a feature has none; review them, then
    POST /labeling-jobs/{id}/activate."""
    catalogue.get(session, ExtractionJob, extraction_id)
    config = config_of(body, exclude={"target"})
    indices = relabel_targets(session, extraction_id, body.target)  # type: ignore[attr-defined]
    if config.features is not None:
        indices = within(sorted(indices), parse_ranges(config.features))
    if not indices:
        raise InvalidInputError(
            f"extraction {extraction_id} has no {body.target} features"  # type: ignore[attr-defined]
            + (f" in {config.features}" if config.features else "")
            + "; there is nothing to relabel (pick another target)"
        )
    ranges = ",".join(f"{low}-{high}" for low, high in ranges_of(indices))
    return start(session, services, extraction_id, replace(config, features=ranges))


@router.post(f"{EXTRACTION}/labeling-estimate", response_model=CostEstimate, responses=errors(404))
def labeling_estimate(
    extraction_id: str,
    body: LabelingConfigIn,
    session: SessionDep,
    services: ServicesDep,  # type: ignore[valid-type]
) -> CostEstimate:
    """Tokens and USD a labeling run with this config would cost, before starting it
    (``usd`` is null when no price is known for the model)."""
    return estimate_labeling_cost(session, extraction_id, config_of(body), store=services.artifacts)


@router.get("/labeling-jobs", response_model=list[LabelingJobOut])
def list_labeling_jobs(
    session: SessionDep,
    services: ServicesDep,
    page: PageDep,
    extraction_id: Annotated[str | None, Query(description="Only this extraction's")] = None,
) -> list[LabelingJob]:
    """Newest first."""
    statement = select(LabelingJob)
    if extraction_id is not None:
        statement = statement.where(LabelingJob.extraction_id == extraction_id)
    statement = (
        statement.order_by(col(LabelingJob.created_at).desc()).offset(page.offset).limit(page.limit)
    )
    return [reconcile(session, job, services.backend) for job in session.exec(statement)]


@router.get("/labeling-jobs/{job_id}", response_model=LabelingJobOut, responses=errors(404))
def get_labeling_job(job_id: str, session: SessionDep, services: ServicesDep) -> LabelingJob:
    return reconcile(session, catalogue.get(session, LabelingJob, job_id), services.backend)


@router.post(
    "/labeling-jobs/{job_id}/cancel",
    response_model=LabelingJobOut,
    status_code=status.HTTP_202_ACCEPTED,
    responses=errors(404, 409, 503),
)
def cancel_labeling(job_id: str, session: SessionDep, services: ServicesDep) -> LabelingJob:
    """Stop a queued or running labeling job (409 once it has ended); the labels it has
    written stay."""
    job = catalogue.get(session, LabelingJob, job_id)
    return cancel_job(session, job, services.backend)


@router.delete(
    "/labeling-jobs/{job_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(404, 409)
)
def delete_labeling(job_id: str, session: SessionDep, services: ServicesDep) -> None:
    """Delete an ended labeling job and its labels; features showing one show none."""
    reconcile(session, catalogue.get(session, LabelingJob, job_id), services.backend)
    delete_labeling_job(session, job_id)


@router.post("/labeling-jobs/{job_id}/activate", response_model=ActivateOut, responses=errors(404))
def activate(job_id: str, body: ActivateIn, session: SessionDep) -> ActivateOut:
    """Make this job's labels the ones features show: for every feature it labeled, or
    ``feature_ids``; with ``only_unset``, only where a feature shows none."""
    changed = activate_labels(session, job_id, body.feature_ids, only_unset=body.only_unset)
    return ActivateOut(labeling_job_id=job_id, features_changed=changed)


@router.get("/labeling-jobs/{job_id}/flagged", response_model=list[LabelOut], responses=errors(404))
def flagged(job_id: str, session: SessionDep, page: PageDep) -> list[LabelOut]:
    """The job's labels flagged for review (confidence under its threshold), least
    confident first."""
    catalogue.get(session, LabelingJob, job_id)
    rows = flagged_labels(session, labeling_job_id=job_id, limit=page.limit, offset=page.offset)
    active = set(
        session.exec(
            select(Feature.active_label_id).where(
                col(Feature.active_label_id).in_([row.id for row in rows])
            )
        )
    )
    return [
        LabelOut.model_validate({**row.model_dump(), "active": row.id in active}) for row in rows
    ]


@router.get(
    "/labeling-jobs/{job_a}/compare/{job_b}",
    response_model=LabelComparison,
    responses=errors(404),
)
def compare(job_a: str, job_b: str, session: SessionDep, page: PageDep) -> LabelComparison:
    """How far two runs over one extraction agree (exact label, word overlap, category),
    with a page of their labels side by side, disagreements first."""
    return compare_labeling_jobs(session, job_a, job_b, limit=page.limit, offset=page.offset)
