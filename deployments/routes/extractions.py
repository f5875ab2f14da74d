"""Extractions: list (with SAE source and labeling state), read, cancel, delete, features."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status
from sqlmodel import Session, select

from deployments import views
from deployments.deps import PageDep, ServicesDep, SessionDep
from deployments.routes import errors
from deployments.routes.features import FeatureQueryDep, feature_page
from deployments.schemas import ExtractionOut, FeaturePage
from saeray import catalogue
from saeray.artifacts import ArtifactStore
from saeray.db.tables import ExtractionJob
from saeray.lifecycle import JobStatus
from saeray.submit import JobBackend, cancel_job, reconcile

router = APIRouter(prefix="/extractions", tags=["extractions"], responses=errors(400, 401, 422))


def load_extraction(session: Session, extraction_id: str, backend: JobBackend) -> ExtractionJob:
    """The extraction row, merged with what Ray says about its driver."""
    extraction = catalogue.get(session, ExtractionJob, extraction_id)
    reconcile(session, extraction, backend)
    return extraction


def extraction_out(session: Session, extraction: ExtractionJob) -> ExtractionOut:
    return views.extraction_outs(session, [extraction])[0]


def delete_extraction_everywhere(
    session: Session, extraction_id: str, artifacts: ArtifactStore
) -> None:
    catalogue.delete_extraction(session, extraction_id)
    artifacts.delete_dir(f"extractions/{extraction_id}")


@router.get("", response_model=list[ExtractionOut])
def list_extractions(
    session: SessionDep,
    services: ServicesDep,
    page: PageDep,
    sae_id: str | None = None,
    status_is: Annotated[JobStatus | None, Query(alias="status")] = None,
) -> list[ExtractionOut]:
    """Newest first; each with its SAE's source type (trained or external) and where its
    labeling stands."""
    statement = select(ExtractionJob)
    if sae_id is not None:
        statement = statement.where(ExtractionJob.sae_id == sae_id)
    if status_is is not None:
        statement = statement.where(ExtractionJob.status == status_is)
    statement = (
        statement.order_by(ExtractionJob.created_at.desc())  # type: ignore[attr-defined]
        .offset(page.offset)
        .limit(page.limit)
    )
    extractions = list(session.exec(statement))
    for extraction in extractions:
        reconcile(session, extraction, services.backend)
    return views.extraction_outs(session, extractions)


@router.get("/{extraction_id}", response_model=ExtractionOut, responses=errors(404))
def get_extraction(extraction_id: str, session: SessionDep, services: ServicesDep) -> ExtractionOut:
    return extraction_out(session, load_extraction(session, extraction_id, services.backend))


@router.post(
    "/{extraction_id}/cancel",
    response_model=ExtractionOut,
    status_code=status.HTTP_202_ACCEPTED,
    responses=errors(404, 409, 503),
)
def cancel_extraction(
    extraction_id: str, session: SessionDep, services: ServicesDep
) -> ExtractionOut:
    """Stop a queued or running extraction (409 once it has ended). The job records its
    cancellation within seconds; follow it on GET /jobs/{id}/events."""
    extraction = catalogue.get(session, ExtractionJob, extraction_id)
    cancel_job(session, extraction, services.backend)
    return extraction_out(session, extraction)


@router.delete(
    "/{extraction_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(404, 409)
)
def delete_extraction(extraction_id: str, session: SessionDep, services: ServicesDep) -> None:
    """Delete an ended extraction with its features, labeling jobs, labels and examples."""
    load_extraction(session, extraction_id, services.backend)
    delete_extraction_everywhere(session, extraction_id, services.artifacts)


@router.get("/{extraction_id}/features", response_model=FeaturePage, responses=errors(404))
def list_extraction_features(
    extraction_id: str, session: SessionDep, query: FeatureQueryDep
) -> FeaturePage:
    """A page of features: sort by frequency, max activation, index or label; search the
    active label, its category or the top tokens; filter labeled, unlabeled, flagged, dead."""
    catalogue.get(session, ExtractionJob, extraction_id)
    return feature_page(session, extraction_id, query)
