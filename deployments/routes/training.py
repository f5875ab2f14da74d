"""Training jobs: a TopK SAE trained here on streamed activations (the trained-SAE path)."""

from __future__ import annotations

from fastapi import APIRouter, status
from sqlmodel import select

from deployments.deps import PageDep, ServicesDep, SessionDep
from deployments.routes import errors
from deployments.schemas import TrainingIn, TrainingJobOut
from saeray import catalogue
from saeray.db.tables import Dataset, TrainingJob
from saeray.submit import cancel_job, reconcile, submit_job
from saeray.training.job import create_training_job

router = APIRouter(prefix="/training-jobs", tags=["training"], responses=errors(400, 401, 422))


@router.post(
    "",
    response_model=TrainingJobOut,
    status_code=status.HTTP_202_ACCEPTED,
    responses=errors(404, 503),
)
def start_training(body: TrainingIn, session: SessionDep, services: ServicesDep) -> TrainingJob:
    """Train a TopK SAE on a model's activations at a hook point, as a Ray job; the SAE
    it produces is registered as a trained SAE (``sae_id`` once it completes)."""
    catalogue.get(session, Dataset, body.dataset_id)
    job = create_training_job(
        session,
        model=body.model_name,
        hook=body.hook_point,
        dataset=body.dataset_id,
        config=body.config.model_dump(exclude_unset=True),
        name=body.name,
    )
    submit_job(session, job, services.backend, services.settings)
    return job


@router.get("", response_model=list[TrainingJobOut])
def list_training_jobs(
    session: SessionDep, services: ServicesDep, page: PageDep
) -> list[TrainingJob]:
    statement = (
        select(TrainingJob)
        .order_by(TrainingJob.created_at.desc())  # type: ignore[attr-defined]
        .offset(page.offset)
        .limit(page.limit)
    )
    return [reconcile(session, job, services.backend) for job in session.exec(statement)]


@router.get("/{job_id}", response_model=TrainingJobOut, responses=errors(404))
def get_training_job(job_id: str, session: SessionDep, services: ServicesDep) -> TrainingJob:
    return reconcile(session, catalogue.get(session, TrainingJob, job_id), services.backend)


@router.post(
    "/{job_id}/cancel",
    response_model=TrainingJobOut,
    status_code=status.HTTP_202_ACCEPTED,
    responses=errors(404, 409, 503),
)
def cancel_training(job_id: str, session: SessionDep, services: ServicesDep) -> TrainingJob:
    """Stop a queued or running training job (409 once it has ended)."""
    job = catalogue.get(session, TrainingJob, job_id)
    return cancel_job(session, job, services.backend)
