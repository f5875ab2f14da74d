"""The job state machine every job kind shares (extraction, labeling, training).

queued -> loading -> one or more running phases -> completed | failed | cancelled,
plus budget_exceeded for labeling. Terminal jobs that did not complete may be requeued
(a labeling job restarted under its id labels only what is missing). Illegal moves raise.
The job process owns its row and writes status, progress and heartbeat through here.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum

from sqlmodel import Session

from saeray.db.tables import ExtractionJob, JobFields, LabelingJob, TrainingJob, utcnow
from saeray.errors import ConflictError, InvalidInputError

log = logging.getLogger(__name__)


class JobStatus(StrEnum):
    QUEUED = "queued"
    LOADING = "loading"
    EXTRACTING = "extracting"
    LABELING = "labeling"
    TRAINING = "training"
    SCORING = "scoring"
    SAVING = "saving"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    BUDGET_EXCEEDED = "budget_exceeded"


RUNNING_PHASES: dict[type[JobFields], frozenset[JobStatus]] = {
    ExtractionJob: frozenset({JobStatus.EXTRACTING, JobStatus.SAVING}),
    LabelingJob: frozenset({JobStatus.LABELING, JobStatus.SCORING}),
    TrainingJob: frozenset({JobStatus.TRAINING, JobStatus.SAVING}),
}
TERMINAL = frozenset(
    {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.BUDGET_EXCEEDED}
)
ACTIVE = frozenset(JobStatus) - TERMINAL
REQUEUEABLE = frozenset({JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.BUDGET_EXCEEDED})


def allowed_next(job: JobFields) -> frozenset[JobStatus]:
    """The statuses ``job`` may move to from where it is."""
    phases = RUNNING_PHASES[type(job)]
    ends = {JobStatus.FAILED, JobStatus.CANCELLED}
    current = JobStatus(job.status)
    if current == JobStatus.QUEUED:
        return frozenset({JobStatus.LOADING} | ends)
    if current == JobStatus.LOADING:
        return frozenset(phases | ends)
    if current in phases:
        finals = {JobStatus.COMPLETED} | ends
        if isinstance(job, LabelingJob):
            finals.add(JobStatus.BUDGET_EXCEEDED)
        return frozenset((phases - {current}) | finals)
    if current in REQUEUEABLE:
        return frozenset({JobStatus.QUEUED})
    return frozenset()


def is_terminal(status: str) -> bool:
    return JobStatus(status) in TERMINAL


def transition(
    session: Session,
    job: JobFields,
    status: JobStatus | str,
    *,
    error: str | None = None,
) -> None:
    """Move ``job`` to ``status`` (committed), or raise ConflictError if that is illegal."""
    target = JobStatus(status)
    if target not in allowed_next(job):
        raise ConflictError(
            f"{type(job).__name__} {getattr(job, 'id', '?')} is {job.status}; it cannot move to "
            f"{target} (allowed: {', '.join(sorted(allowed_next(job))) or 'none, it has ended'})"
        )
    now = utcnow()
    job.status = target
    job.heartbeat_at = now
    if target == JobStatus.QUEUED:
        job.started_at = job.finished_at = job.error = None
    elif target == JobStatus.LOADING:
        job.started_at = now
    elif target in TERMINAL:
        job.finished_at = now
        if target == JobStatus.COMPLETED:
            job.progress = 1.0
    if error is not None:
        job.error = error
    session.add(job)
    session.commit()


def report_progress(session: Session, job: JobFields, progress: float, **fields: object) -> None:
    """Record progress in [0, 1], other counters, and a heartbeat (committed)."""
    if not 0.0 <= progress <= 1.0:
        raise InvalidInputError(f"progress must lie in [0, 1], got {progress}")
    job.progress = progress
    for name, value in fields.items():
        setattr(job, name, value)
    job.heartbeat_at = utcnow()
    session.add(job)
    session.commit()


def record_ending(session: Session, job: JobFields, status: JobStatus, message: str) -> None:
    """Record how a job process ended, unless its row has ended already (e.g. reconciled
    by the API). Never raises: it runs while another exception is on its way out."""
    try:
        session.rollback()
        session.refresh(job)
        if not is_terminal(job.status):
            transition(session, job, status, error=message)
    except Exception:
        log.exception("could not record that %s %s ended %s: %s",
                      type(job).__name__, job.id, status, message)  # fmt: skip


class JobCancelled(BaseException):
    """The job was asked to stop. A BaseException, so no ``except Exception`` swallows it."""


@contextmanager
def on_sigterm(action: Callable[[], None]) -> Iterator[None]:
    """Call ``action`` on the first SIGTERM (what ``ray job stop`` sends) while the block
    runs; later ones are ignored while the job cleans up (Ray escalates to SIGKILL if that
    takes too long). Signals reach the main thread only: elsewhere this does nothing, and
    the caller needs another way to be stopped."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(_signum: int, _frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        action()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def raise_cancelled() -> None:
    """The ``on_sigterm`` action of jobs that stop by unwinding their main thread."""
    raise JobCancelled("the job was stopped (SIGTERM)")
