"""Any job by id (ext_, lab_, trn_): its status, and a live stream of it.

The status read is one primary-key lookup; Ray is asked only when the job's heartbeat has
gone quiet (saeray.submit.reconcile). The event stream sends the current state at once (so
a client that connects late or reconnects is never left with nothing), then the state at
least every 2 s until the job ends, then closes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from functools import cache

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse
from sqlalchemy import Row, Select, bindparam
from sqlmodel import select

from deployments import views
from deployments.deps import Services, ServicesDep
from deployments.routes import errors
from deployments.schemas import JobStatusOut
from saeray.db.engine import session_scope
from saeray.db.tables import JobFields
from saeray.submit import get_job, kind_of, needs_reconcile, reconcile

router = APIRouter(prefix="/jobs", tags=["jobs"], responses=errors(400, 401, 404, 422))

POLL_S = 0.5  # how often the stream rereads the row
KEEPALIVE_S = 1.5  # the longest silence between two events, however still the job is


@cache
def status_query(table: type[JobFields]) -> Select:
    """The status columns of one job of ``table`` by id (bound as ``job_id``), built once:
    building and hashing the statement cost as much as running it."""
    columns = [getattr(table, name) for name in views.STATUS_COLUMNS]
    return select(*columns).where(table.id == bindparam("job_id"))  # type: ignore[attr-defined]


def read_status_row(services: Services, job_id: str) -> Row | None:
    """The status columns of one job: one primary-key read."""
    query = status_query(kind_of(job_id).table)
    with services.engine.connect() as connection:
        return connection.execute(query, {"job_id": job_id}).one_or_none()


def reconciled_status(services: Services, job_id: str) -> JobStatusOut:
    """The longer way, for a job that may have died (quiet heartbeat) or is unknown: its
    row object merged with Ray's view of its driver."""
    with session_scope(services.engine) as session:
        return views.job_status_out(reconcile(session, get_job(session, job_id), services.backend))


async def read_status(services: Services, job_id: str) -> JobStatusOut:
    """A job's status. A healthy job's is one primary-key read, done right here on the
    event loop: it takes well under a millisecond, less than the hop to the thread pool
    costs, and that hop was a third of a status read's CPU. Asking Ray may take seconds,
    so that goes to the thread pool."""
    row = read_status_row(services, job_id)
    if row is not None and not needs_reconcile(row):
        return views.job_status_out(row)
    return await run_in_threadpool(reconciled_status, services, job_id)


@router.get("/{job_id}", response_model=JobStatusOut)
async def job_status(job_id: str, services: ServicesDep) -> Response:
    """A job's status and progress, merged with Ray's view of its driver. The cheapest
    read there is (one primary-key read): poll this, or stream ``/events``."""
    state = await read_status(services, job_id)
    return Response(state.model_dump_json(), media_type="application/json")


def sse(state: JobStatusOut, sequence: int) -> str:
    return f"id: {sequence}\nevent: status\ndata: {state.model_dump_json()}\n\n"


async def stream(request: Request, services: Services, first: JobStatusOut) -> AsyncIterator[str]:
    state, sequence = first, 0
    yield "retry: 1000\n" + sse(state, sequence)
    last_sent = time.monotonic()
    while not state.terminal:
        await asyncio.sleep(POLL_S)
        if await request.is_disconnected():
            return
        current = await read_status(services, state.id)
        if current != state or time.monotonic() - last_sent >= KEEPALIVE_S:
            sequence += 1
            state = current
            yield sse(state, sequence)
            last_sent = time.monotonic()


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "Server-Sent Events: `event: status`, `data:` a JobStatusOut "
            "as JSON. The first at once, then at least every 2 s; the stream ends after "
            "the event whose `terminal` is true.",
            "content": {
                "text/event-stream": {"schema": {"$ref": "#/components/schemas/JobStatusOut"}}
            },
        }
    },
)
async def job_events(job_id: str, request: Request, services: ServicesDep) -> StreamingResponse:
    first = await read_status(services, job_id)  # 404 before streaming
    return StreamingResponse(
        stream(request, services, first),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
