"""SAEs: the catalogue, and the extraction of an SAE's features."""

from __future__ import annotations

from fastapi import APIRouter, status
from sqlmodel import Session, select

from deployments import views
from deployments.deps import PageDep, ServicesDep, SessionDep
from deployments.routes import errors
from deployments.routes.extractions import (
    delete_extraction_everywhere,
    extraction_out,
    load_extraction,
)
from deployments.routes.features import FeatureQueryDep, feature_page
from deployments.schemas import ExtractionIn, ExtractionOut, FeaturePage, SAEIn, SAEOut
from saeray import catalogue
from saeray.db.tables import SAE, ExtractionJob
from saeray.errors import ConflictError, NotFoundError
from saeray.extraction import create_extraction_job
from saeray.lifecycle import ACTIVE, JobStatus
from saeray.submit import JobBackend, cancel_job, reconcile, submit_job

router = APIRouter(prefix="/saes", tags=["saes"], responses=errors(400, 401, 422))


def latest_extraction(
    session: Session, sae_id: str, *, status_in: frozenset[JobStatus] | None = None
) -> ExtractionJob | None:
    statement = select(ExtractionJob).where(ExtractionJob.sae_id == sae_id)
    if status_in is not None:
        statement = statement.where(ExtractionJob.status.in_(status_in))  # type: ignore[attr-defined]
    newest = statement.order_by(ExtractionJob.created_at.desc()).limit(1)  # type: ignore[attr-defined]
    return session.exec(newest).first()


def active_extraction(session: Session, sae_id: str, backend: JobBackend) -> ExtractionJob | None:
    """The SAE's running extraction, after Ray has had its say on whether it still runs."""
    for extraction in session.exec(
        select(ExtractionJob).where(
            ExtractionJob.sae_id == sae_id,
            ExtractionJob.status.in_(ACTIVE),  # type: ignore[attr-defined]
        )
    ):
        if reconcile(session, extraction, backend).status in ACTIVE:
            return extraction
    return None


@router.get("", response_model=list[SAEOut])
def list_saes(session: SessionDep, page: PageDep) -> list[SAEOut]:
    return [
        views.sae_out(sae)
        for sae in catalogue.list_rows(session, SAE, limit=page.limit, offset=page.offset)
    ]


@router.post(
    "", response_model=SAEOut, status_code=status.HTTP_201_CREATED, responses=errors(400, 404)
)
def register_sae(body: SAEIn, session: SessionDep) -> SAEOut:
    """Register an SAE from a local path, or a Hugging Face repo (``path``) and the folder
    in it (``path_in_repo``). Its files are read now, so a broken SAE is refused here."""
    sae = catalogue.register_sae(session, **body.model_dump())
    return views.sae_out(sae)


@router.get("/{sae_id}", response_model=SAEOut, responses=errors(404))
def get_sae(sae_id: str, session: SessionDep) -> SAEOut:
    return views.sae_out(catalogue.get(session, SAE, sae_id))


@router.delete("/{sae_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(404, 409))
def delete_sae(
    sae_id: str, session: SessionDep, services: ServicesDep, cascade: bool = False
) -> None:
    """Delete an SAE. Refused (409) while extractions of it exist, unless ``cascade``
    deletes them too, with their features, labels and examples."""
    catalogue.get(session, SAE, sae_id)
    if cascade:
        for extraction in catalogue.extractions_of(session, sae_id):
            load_extraction(session, extraction.id, services.backend)
            delete_extraction_everywhere(session, extraction.id, services.artifacts)
    catalogue.delete_sae(session, sae_id)


@router.post(
    "/{sae_id}/extract-features",
    response_model=ExtractionOut,
    status_code=status.HTTP_202_ACCEPTED,
    responses=errors(404, 409, 503),
)
def extract_features(
    sae_id: str, body: ExtractionIn, session: SessionDep, services: ServicesDep
) -> ExtractionOut:
    """Start extracting the SAE's features over a dataset, as a Ray job. One extraction
    per SAE runs at a time (409 while another does)."""
    catalogue.get(session, SAE, sae_id)
    running = active_extraction(session, sae_id, services.backend)
    if running is not None:
        raise ConflictError(
            f"SAE {sae_id} is already being extracted by {running.id} ({running.status}); "
            f"wait for it, or cancel it with POST /api/v1/saes/{sae_id}/cancel-extraction"
        )
    config = body.config.model_dump(exclude_unset=True)
    extraction = create_extraction_job(session, sae_id, body.dataset_id, config)
    submit_job(session, extraction, services.backend, services.settings)
    return extraction_out(session, extraction)


@router.get("/{sae_id}/extraction-status", response_model=ExtractionOut, responses=errors(404))
def extraction_status(sae_id: str, session: SessionDep, services: ServicesDep) -> ExtractionOut:
    """The SAE's latest extraction, merged with Ray's view of its driver."""
    catalogue.get(session, SAE, sae_id)
    extraction = latest_extraction(session, sae_id)
    if extraction is None:
        raise NotFoundError(
            f"SAE {sae_id} has never been extracted; start with "
            f"POST /api/v1/saes/{sae_id}/extract-features"
        )
    reconcile(session, extraction, services.backend)
    return extraction_out(session, extraction)


@router.post(
    "/{sae_id}/cancel-extraction",
    response_model=ExtractionOut,
    status_code=status.HTTP_202_ACCEPTED,
    responses=errors(404, 409, 503),
)
def cancel_extraction(sae_id: str, session: SessionDep, services: ServicesDep) -> ExtractionOut:
    """Cancel the SAE's running extraction (409 when none runs)."""
    catalogue.get(session, SAE, sae_id)
    running = active_extraction(session, sae_id, services.backend)
    if running is None:
        raise ConflictError(f"SAE {sae_id} has no extraction running; there is nothing to cancel")
    cancel_job(session, running, services.backend)
    return extraction_out(session, running)


@router.get("/{sae_id}/features", response_model=FeaturePage, responses=errors(404))
def list_sae_features(sae_id: str, session: SessionDep, query: FeatureQueryDep) -> FeaturePage:
    """The features of the SAE's latest completed extraction (same query as
    GET /extractions/{id}/features)."""
    catalogue.get(session, SAE, sae_id)
    extraction = latest_extraction(session, sae_id, status_in=frozenset({JobStatus.COMPLETED}))
    if extraction is None:
        raise NotFoundError(
            f"SAE {sae_id} has no completed extraction yet; start one with "
            f"POST /api/v1/saes/{sae_id}/extract-features"
        )
    return feature_page(session, extraction.id, query)
