"""Text datasets (corpus specs) in the catalogue."""

from __future__ import annotations

from fastapi import APIRouter, status

from deployments.deps import PageDep, SessionDep
from deployments.routes import errors
from deployments.schemas import DatasetIn, DatasetOut
from saeray import catalogue
from saeray.db.tables import Dataset

router = APIRouter(prefix="/datasets", tags=["datasets"], responses=errors(400, 401, 422))


@router.get("", response_model=list[DatasetOut])
def list_datasets(session: SessionDep, page: PageDep) -> list[Dataset]:
    return catalogue.list_rows(session, Dataset, limit=page.limit, offset=page.offset)


@router.post(
    "", response_model=DatasetOut, status_code=status.HTTP_201_CREATED, responses=errors(400, 404)
)
def register_dataset(body: DatasetIn, session: SessionDep) -> Dataset:
    """Register a corpus by its spec; a malformed spec is refused here. The same spec and
    text field registered twice return the first registration."""
    return catalogue.register_dataset(
        session, body.spec, name=body.name, text_field=body.text_field
    )


@router.get("/{dataset_id}", response_model=DatasetOut, responses=errors(404))
def get_dataset(dataset_id: str, session: SessionDep) -> Dataset:
    return catalogue.get(session, Dataset, dataset_id)


@router.delete("/{dataset_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(404, 409))
def delete_dataset(dataset_id: str, session: SessionDep) -> None:
    """Delete a dataset no extraction reads (409 otherwise: delete those first)."""
    catalogue.delete_dataset(session, dataset_id)
