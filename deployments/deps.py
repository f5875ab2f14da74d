"""What every route needs, held by the app: the engine, the job backend, the artifact
store; and a session per request that commits on success."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request
from sqlalchemy.engine import Engine
from sqlmodel import Session

from saeray.artifacts import ArtifactStore
from saeray.db.engine import session_scope
from saeray.settings import Settings
from saeray.submit import JobBackend


@dataclass(frozen=True)
class Services:
    settings: Settings
    engine: Engine
    backend: JobBackend
    artifacts: ArtifactStore


# Dependencies that do no I/O are ``async def``: FastAPI runs a plain ``def`` dependency in
# its thread pool, a hop each that a status read does not need to pay.
async def get_services(request: Request) -> Services:
    return request.app.state.services


def get_session(services: Annotated[Services, Depends(get_services)]) -> Iterator[Session]:
    with session_scope(services.engine) as session:
        yield session


MAX_OFFSET = 2**31 - 1  # what every database's integer type holds
MAX_ROW_ID = 2**31 - 1  # integer primary keys (features, labels) are 32-bit on PostgreSQL


@dataclass(frozen=True)
class Page:
    limit: int
    offset: int


async def get_page(
    limit: Annotated[int, Query(ge=1, le=500, description="Rows per page")] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Rows to skip")] = 0,
) -> Page:
    return Page(limit, offset)


ServicesDep = Annotated[Services, Depends(get_services)]
SessionDep = Annotated[Session, Depends(get_session)]
PageDep = Annotated[Page, Depends(get_page)]
