"""Jobs as Ray jobs, and rows that stay honest about them.

A job is a database row first (queued), then a Ray job whose submission id is the row's id
and whose entrypoint is ``python -m jobs.<kind> --job-id <id>``. The job process owns its
row. This module submits, stops and reconciles: a row that claims to be active while Ray
says its driver has ended, or while Ray has never heard of it, is ended here with a message
naming what happened, so that no job reads "running" forever.

The runtime_env carries only ``SAERAY_HOME``, ``SAERAY_DATABASE_URL`` and
``SAERAY_ARTIFACTS``; provider keys stay in the cluster's own environment.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import Row
from sqlmodel import Session

from saeray.catalogue import get
from saeray.db.tables import ExtractionJob, JobFields, LabelingJob, TrainingJob
from saeray.errors import ConflictError, NotFoundError, SaerayError
from saeray.lifecycle import JobStatus, is_terminal, transition
from saeray.settings import Settings, get_settings

if TYPE_CHECKING:
    from ray.job_submission import JobSubmissionClient

log = logging.getLogger(__name__)

# A job process heartbeats at most 2 s apart: five missed beats, and Ray is asked.
STALE_AFTER = timedelta(seconds=10)
# A queued row is asked about once it is this old (submission takes a moment) ...
QUEUED_CHECK_AFTER = timedelta(seconds=2)
# ... and a queued row Ray still does not know after this long was never submitted.
QUEUED_GRACE = timedelta(seconds=60)
# One process asks Ray about one job at most this often, however many read its status.
RAY_STATE_TTL_S = 2.0
# How long a submission waits for a node's job agent (a fresh cluster has none at first).
AGENT_WAIT_S = 30.0


@dataclass(frozen=True)
class JobKind:
    name: str  # extraction | labeling | training
    table: type[JobFields]
    module: str  # the entrypoint is ``python -m jobs.<module>``


JOB_KINDS: dict[str, JobKind] = {
    "ext": JobKind("extraction", ExtractionJob, "extract"),
    "lab": JobKind("labeling", LabelingJob, "label"),
    "trn": JobKind("training", TrainingJob, "train"),
}


def kind_of(job_id: str) -> JobKind:
    kind = JOB_KINDS.get(job_id.partition("_")[0])
    if kind is None:
        raise NotFoundError(
            f"no job with id {job_id!r}; job ids start with "
            + ", ".join(f"{prefix}_ ({kind.name})" for prefix, kind in JOB_KINDS.items())
        )
    return kind


def get_job(session: Session, job_id: str) -> JobFields:
    """The job row of any kind, by its prefixed id; NotFoundError if there is none."""
    return get(session, kind_of(job_id).table, job_id)


def entrypoint(job_id: str) -> str:
    return f"python -m jobs.{kind_of(job_id).module} --job-id {job_id}"


# --- the backend: Ray, or anything that runs, stops and reports on jobs by id --------------


class BackendUnavailableError(SaerayError):
    """The job backend (the Ray cluster) cannot be reached (HTTP 503)."""


@dataclass(frozen=True)
class DriverState:
    """What the backend says about a job's driver: a Ray JobStatus name and its message."""

    status: str  # PENDING | RUNNING | STOPPED | SUCCEEDED | FAILED
    message: str | None = None

    @property
    def ended(self) -> bool:
        return self.status in ("STOPPED", "SUCCEEDED", "FAILED")


class JobBackend(Protocol):
    def submit(self, job_id: str, entrypoint: str, env_vars: dict[str, str]) -> None: ...

    def stop(self, job_id: str) -> None: ...

    def state(self, job_id: str) -> DriverState | None:
        """The driver's state, or None when the backend has never heard of the job."""
        ...


class RayJobBackend:
    """Ray's JobSubmissionClient, made lazily (it resolves the dashboard on creation)."""

    def __init__(self, address: str | None = None) -> None:
        self._address = address
        self._client: JobSubmissionClient | None = None
        self._lock = threading.Lock()
        self._states: dict[str, tuple[float, DriverState | None]] = {}

    def _resolve_address(self) -> str | None:
        if self._address is not None:
            return self._address
        import ray

        # Inside the cluster (a Serve replica), the GCS address leads to the dashboard;
        # elsewhere None lets Ray use RAY_ADDRESS or find a local cluster.
        return ray.get_runtime_context().gcs_address if ray.is_initialized() else None

    def client(self) -> JobSubmissionClient:
        with self._lock:
            if self._client is None:
                from ray.job_submission import JobSubmissionClient

                address = self._resolve_address()
                try:
                    self._client = JobSubmissionClient(address)
                except (OSError, RuntimeError, ValueError) as exc:
                    raise BackendUnavailableError(
                        f"cannot reach the Ray cluster ({address or 'auto'}): {exc}; start one "
                        "with `ray start --head` or set RAY_ADDRESS"
                    ) from exc
            return self._client

    def submit(self, job_id: str, entrypoint: str, env_vars: dict[str, str]) -> None:
        client = self.client()
        deadline = time.monotonic() + AGENT_WAIT_S
        while True:
            try:
                client.submit_job(
                    entrypoint=entrypoint,
                    submission_id=job_id,
                    runtime_env={"env_vars": env_vars},
                    metadata={"saeray_job": job_id},
                )
                break
            except RuntimeError as exc:
                if "already exists" in str(exc):
                    raise ConflictError(
                        f"Ray already has a job {job_id}; create a new job, do not resubmit"
                    ) from exc
                # A node's job agent registers a little after the cluster starts.
                if "No available agent" in str(exc) and time.monotonic() < deadline:
                    time.sleep(0.5)
                    continue
                raise BackendUnavailableError(f"Ray refused job {job_id}: {exc}") from exc
            except OSError as exc:
                raise BackendUnavailableError(
                    f"cannot reach Ray to submit {job_id}: {exc}"
                ) from exc
        self._states.pop(job_id, None)

    def stop(self, job_id: str) -> None:
        try:
            self.client().stop_job(job_id)
        except RuntimeError as exc:
            if not _is_not_found(exc):
                raise BackendUnavailableError(f"Ray could not stop job {job_id}: {exc}") from exc
        except OSError as exc:
            raise BackendUnavailableError(f"cannot reach Ray to stop {job_id}: {exc}") from exc
        self._states.pop(job_id, None)

    def state(self, job_id: str) -> DriverState | None:
        cached = self._states.get(job_id)
        if cached is not None and time.monotonic() - cached[0] < RAY_STATE_TTL_S:
            return cached[1]
        try:
            info = self.client().get_job_info(job_id)
            state: DriverState | None = DriverState(str(info.status.value), info.message)
        except RuntimeError as exc:
            if not _is_not_found(exc):
                raise BackendUnavailableError(f"Ray could not report on {job_id}: {exc}") from exc
            state = None
        except OSError as exc:
            raise BackendUnavailableError(f"cannot reach Ray about {job_id}: {exc}") from exc
        self._states[job_id] = (time.monotonic(), state)
        return state


def _is_not_found(exc: RuntimeError) -> bool:
    # JobSubmissionClient raises RuntimeError("Request failed with status code 404: ...").
    return "status code 404" in str(exc)


# --- submit, cancel, reconcile ---------------------------------------------------------------


def submit_job(
    session: Session, job: JobFields, backend: JobBackend, settings: Settings | None = None
) -> None:
    """Hand a queued row to the backend. If that fails the row is failed with the reason
    (never left queued for nothing) and the error is raised."""
    job_id: str = job.id  # type: ignore[attr-defined]
    env_vars = (settings or get_settings()).as_env()
    try:
        backend.submit(job_id, entrypoint(job_id), env_vars)
    except SaerayError as exc:
        transition(session, job, JobStatus.FAILED, error=f"could not submit to Ray: {exc}")
        raise


def cancel_job(session: Session, job: JobFields, backend: JobBackend) -> JobFields:
    """Stop a job. A queued job is cancelled at once (no process of it may own the row
    yet); a running job's process gets SIGTERM and records its own cancellation."""
    job_id: str = job.id  # type: ignore[attr-defined]
    reconcile(session, job, backend)
    if is_terminal(job.status):
        raise ConflictError(
            f"{kind_of(job_id).name} job {job_id} has already ended ({job.status}); "
            "there is nothing to cancel"
        )
    backend.stop(job_id)
    if job.status == JobStatus.QUEUED:
        transition(session, job, JobStatus.CANCELLED, error="cancelled before it started")
    return job


def reconcile(session: Session, job: JobFields, backend: JobBackend) -> JobFields:
    """Merge the row with the backend's view: an active row whose driver has ended, or that
    the backend never heard of past the grace period, is ended with a message. Cheap for a
    healthy job: the backend is asked only when the row's heartbeat has gone quiet."""
    if not needs_reconcile(job):
        return job
    job_id: str = job.id  # type: ignore[attr-defined]
    try:
        state = backend.state(job_id)
    except BackendUnavailableError as exc:
        log.warning("cannot reconcile %s: %s", job_id, exc)  # the row stays as it is
        return job
    verdict = _verdict(job, state)
    if verdict is None:
        return job
    session.refresh(job)  # the job process may have written its end meanwhile
    if not is_terminal(job.status):
        status, message = verdict
        transition(session, job, status, error=message)
    return job


def needs_reconcile(job: JobFields | Row) -> bool:
    """Whether reading this job (a row object, or just its status and time columns) should
    ask the backend: it is active and its heartbeat has gone quiet (or it is still queued)."""
    if is_terminal(job.status):
        return False
    if job.status == JobStatus.QUEUED:
        return _age(job.created_at) > QUEUED_CHECK_AFTER
    return _age(job.heartbeat_at or job.started_at or job.created_at) > STALE_AFTER


def _age(moment: datetime | None) -> timedelta:
    if moment is None:
        return timedelta.max
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return datetime.now(UTC) - moment


def _verdict(job: JobFields, state: DriverState | None) -> tuple[JobStatus, str] | None:
    """The status and message an active row should end with, or None to leave it be."""
    if state is None:
        if job.status == JobStatus.QUEUED and _age(job.created_at) <= QUEUED_GRACE:
            return None
        return JobStatus.FAILED, (
            "Ray has no record of this job: it was never submitted, or the cluster was "
            "restarted; start a new job"
        )
    reason = f" ({state.message})" if state.message else ""
    if state.status == "FAILED":
        return JobStatus.FAILED, f"the job process died{reason}; see `ray job logs {job.id}`"  # type: ignore[attr-defined]
    if state.status == "STOPPED":
        return JobStatus.CANCELLED, f"the Ray job was stopped before it recorded its end{reason}"
    if state.status == "SUCCEEDED":
        return JobStatus.FAILED, "the job process exited without recording its result"
    return None
