"""Language models in the catalogue."""

from __future__ import annotations

from fastapi import APIRouter, status

from deployments.deps import PageDep, SessionDep
from deployments.routes import errors
from deployments.schemas import ModelIn, ModelOut
from saeray import catalogue
from saeray.db.tables import Model

router = APIRouter(prefix="/models", tags=["models"], responses=errors(400, 401, 422))


@router.get("", response_model=list[ModelOut])
def list_models(session: SessionDep, page: PageDep) -> list[Model]:
    return catalogue.list_rows(session, Model, limit=page.limit, offset=page.offset)


@router.post(
    "", response_model=ModelOut, status_code=status.HTTP_201_CREATED, responses=errors(400, 404)
)
def register_model(body: ModelIn, session: SessionDep) -> Model:
    """Register a model by hub id or local folder; its config is read now, so a wrong name
    is refused here. Registering the same name twice returns the first registration."""
    return catalogue.register_model(
        session, body.name, revision=body.revision, trust_remote_code=body.trust_remote_code
    )


@router.get("/{model_id}", response_model=ModelOut, responses=errors(404))
def get_model(model_id: str, session: SessionDep) -> Model:
    return catalogue.get(session, Model, model_id)


@router.delete("/{model_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(404))
def delete_model(model_id: str, session: SessionDep) -> None:
    catalogue.delete_model(session, model_id)
