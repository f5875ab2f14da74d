"""Run one labeling job end to end.

1. Lock the job id on the cluster (its rate gate is a named actor) and claim the row:
   queued, or ended without completing, or active with a driver that stopped beating.
2. Loading: find the features of the frozen selection this job has not labeled yet, start
   the labeler actors and check that their providers are usable.
3. Labeling: read examples bucket by bucket, build prompts, keep ``concurrency`` features
   in flight, and record outcomes as they stream back (labels upserted in small batches
   with the counters, the heartbeat at most a second apart).
4. End: completed; or budget_exceeded once the budget is spent (the gate closes, nothing
   more is sent, answers in flight are still recorded); or cancelled on SIGTERM (``ray job
   stop``) or ``stop`` within seconds. Labels become active where features have none.

A restarted job (same id) labels only what is missing: features with a label are skipped,
failed ones are tried again.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from datetime import UTC, datetime

import ray
from ray.actor import ActorHandle
from ray.exceptions import RayError
from sqlalchemy.engine import Engine
from sqlmodel import Session

from saeray.artifacts import ArtifactStore
from saeray.catalogue import get
from saeray.db.engine import open_engine, session_scope
from saeray.db.migrate import ensure_schema_current
from saeray.db.tables import LabelingJob, PromptTemplate
from saeray.errors import ConflictError, SaerayError
from saeray.labeling.attempts import RetryPolicy
from saeray.labeling.config import LabelingConfig
from saeray.labeling.evidence import FeatureStats, feature_stats, load_evidence
from saeray.labeling.items import LabelItem, LabelOutcome, OutcomeStatus
from saeray.labeling.limiter import Limits
from saeray.labeling.pool import start_gate, start_labelers, stop_actors
from saeray.labeling.pricing import Price
from saeray.labeling.prompt import PromptBuilder
from saeray.labeling.providers.base import ProviderSetupError, RequestOptions
from saeray.labeling.review import activate_labels
from saeray.labeling.selection import expand
from saeray.labeling.store import JobRecorder, job_config, labeled_feature_ids
from saeray.lifecycle import ACTIVE, REQUEUEABLE, JobStatus, on_sigterm, transition

log = logging.getLogger(__name__)

POLL_S = 0.2
CANCEL_GRACE_S = 1.5  # answers in flight when cancelled are waited for this long
TAKEOVER_AFTER_S = 5.0  # an active row whose heartbeat is this old has lost its driver
READY_TIMEOUT_S = 300.0  # labeler actors may wait for a node to come up


def run_labeling_job(
    job_id: str, *, stop: threading.Event | None = None, engine: Engine | None = None
) -> LabelingJob:
    """Do the work of a labeling job whose row exists, and return the row as it ended.

    ``stop`` cancels the job when set (SIGTERM does the same in the main thread). A
    problem the user can fix (no API key, bad config) ends the job as failed with the
    reason; a bug does too, and is raised.
    """
    engine = ensure_schema_current(engine or open_engine())
    stop = stop or threading.Event()
    with session_scope(engine) as session:
        job = get(session, LabelingJob, job_id)
        try:
            config = job_config(job)
        except SaerayError as exc:
            if job.status == JobStatus.QUEUED:
                transition(session, job, JobStatus.FAILED, error=f"bad config: {exc}")
            raise
    if not ray.is_initialized():
        ray.init(logging_level=logging.WARNING)
    limits = {spec.key: Limits(config.rpm, config.tpm) for spec in config.chain}
    with on_sigterm(stop.set):
        gate = start_gate(job_id, limits, job.budget_usd, job.cost_usd)
        actors = [gate]
        try:
            # Labelers start (a process each) while the row is claimed and work is planned.
            labelers = _start_labelers(job_id, config, job.config["prices"], limits)
            actors.extend(labelers)
            with session_scope(engine) as session:
                job = claim(session, job_id)
                return _run(session, job, config, labelers, gate, stop)
        finally:
            stop_actors(actors)


def claim(session: Session, job_id: str) -> LabelingJob:
    """Take the row for this process and move it to loading."""
    job = get(session, LabelingJob, job_id)
    if job.status == JobStatus.COMPLETED:
        raise ConflictError(f"labeling job {job_id} has completed; re-labeling creates a new job")
    if job.status in ACTIVE and job.status != JobStatus.QUEUED:
        _wait_until_silent(session, job)
        transition(session, job, JobStatus.FAILED, error="its driver stopped; restarting")
    if job.status in REQUEUEABLE:
        transition(session, job, JobStatus.QUEUED)
    transition(session, job, JobStatus.LOADING)
    return job


def _wait_until_silent(session: Session, job: LabelingJob) -> None:
    """Return once the row's heartbeat has been still for TAKEOVER_AFTER_S; raise if it
    moves (another driver, perhaps on another cluster, is running the job)."""
    seen = job.heartbeat_at
    while _age_s(seen) < TAKEOVER_AFTER_S:
        time.sleep(0.25)
        session.refresh(job)
        if job.heartbeat_at != seen or job.status not in ACTIVE:
            raise ConflictError(
                f"labeling job {job.id} is running elsewhere (it is {job.status} and its "
                f"heartbeat moves); stop it first with `ray job stop {job.id}`"
            )


def _age_s(moment: datetime | None) -> float:
    return float("inf") if moment is None else (datetime.now(UTC) - moment).total_seconds()


def _run(
    session: Session,
    job: LabelingJob,
    config: LabelingConfig,
    labelers: list[ActorHandle],
    gate: ActorHandle,
    stop: threading.Event,
) -> LabelingJob:
    recorder = JobRecorder(session, job, config.confidence_threshold)
    try:
        todo = _todo(session, job)
        builder = PromptBuilder.from_template(
            get(session, PromptTemplate, config.prompt_template_id)
            if config.prompt_template_id
            else None,
            top_examples=config.top_examples,
            quantile_examples=config.quantile_examples,
        )
        _wait_until_ready(labelers, recorder, stop)
        if stop.is_set():
            transition(session, job, JobStatus.CANCELLED, error="cancelled while loading")
            return job
        transition(session, job, JobStatus.LABELING)
        ending = _label_all(job, config, builder, todo, labelers, gate, recorder, stop)
        recorder.tick(force=True)
        activate_labels(session, job.id, only_unset=True)
        transition(session, job, ending, error=_ending_message(job, ending))
        return job
    except SaerayError as exc:
        recorder.tick(force=True)
        transition(session, job, JobStatus.FAILED, error=str(exc))
        return job
    except Exception as exc:
        session.rollback()
        session.refresh(job)
        transition(session, job, JobStatus.FAILED, error=f"internal error: {exc!r}")
        raise


def _todo(session: Session, job: LabelingJob) -> list[FeatureStats]:
    """Features of the job's selection it has no label for, by index."""
    done = labeled_feature_ids(session, job.id)
    selected = feature_stats(session, job.extraction_id, expand(job.config["selection"]))
    return [stats for stats in selected if stats.feature_id not in done]


def _start_labelers(
    job_id: str,
    config: LabelingConfig,
    prices: dict[str, dict[str, float] | None],
    limits: dict[str, Limits],
) -> list[ActorHandle]:
    count = config.actors or min(4, -(-config.concurrency // 32))
    return start_labelers(
        count,
        -(-config.concurrency // count),
        list(config.chain),
        RequestOptions(config.request_timeout_s, config.max_output_tokens, config.response_format),
        RetryPolicy(
            config.max_attempts,
            config.backoff_base_s,
            config.backoff_max_s,
            config.max_output_tokens,
        ),
        {key: Price(**price) if price else None for key, price in prices.items()},
        job_id,
        limits,
        config.budget_usd is not None,
    )


def _wait_until_ready(
    labelers: list[ActorHandle], recorder: JobRecorder, stop: threading.Event
) -> None:
    """Wait for the labelers to start, heartbeating; raise if a provider is unusable."""
    waiting = [labeler.ready.remote() for labeler in labelers]
    deadline = time.monotonic() + READY_TIMEOUT_S
    while waiting and not stop.is_set():
        if time.monotonic() > deadline:
            raise SaerayError(
                f"labeler actors did not start within {READY_TIMEOUT_S:.0f} s; check that "
                "the Ray cluster has room"
            )
        ready, waiting = ray.wait(waiting, num_returns=len(waiting), timeout=0.5)
        for problem in ray.get(ready):
            if problem is not None:
                raise ProviderSetupError(problem)
        recorder.tick()


def _label_all(
    job: LabelingJob,
    config: LabelingConfig,
    builder: PromptBuilder,
    todo: list[FeatureStats],
    labelers: list[ActorHandle],
    gate: ActorHandle,
    recorder: JobRecorder,
    stop: threading.Event,
) -> JobStatus:
    """Stream the features through the pool; the status the job ends with."""
    evidence = load_evidence(ArtifactStore(), job.extraction_id, todo)
    next_labeler = itertools.cycle(labelers)
    in_flight: dict[ray.ObjectRef, LabelItem] = {}
    max_in_flight = config.concurrency + 2 * len(labelers)  # labelers never sit idle
    ending: JobStatus | None = None
    deadline = float("inf")
    exhausted = False
    while True:
        if ending is None and (stop.is_set() or _over_budget(job)):
            ending = JobStatus.CANCELLED if stop.is_set() else JobStatus.BUDGET_EXCEEDED
            gate.close.remote()  # no request is granted from here on, anywhere in the pool
            grace = CANCEL_GRACE_S if stop.is_set() else config.request_timeout_s + 5
            deadline = time.monotonic() + grace
        while ending is None and not exhausted and len(in_flight) < max_in_flight:
            feature = next(evidence, None)
            if feature is None:
                exhausted = True
            elif not feature.examples:
                recorder.record(_no_examples(feature.stats))
                recorder.tick()  # a run of them must not starve the heartbeat
            else:
                item = builder.item(feature)
                in_flight[next(next_labeler).label.remote(item)] = item
        if not in_flight and (exhausted or ending is not None):
            break
        if time.monotonic() > deadline:
            break
        ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=POLL_S)
        if ready:
            ready, _ = ray.wait(list(in_flight), num_returns=len(in_flight), timeout=0)
        for ref in ready:
            outcome = _outcome(ref, in_flight.pop(ref))
            recorder.record(outcome)
            if outcome.status == OutcomeStatus.SKIPPED and ending is None:
                # Only the gate itself closes unasked: it saw the budget spent first.
                ending = JobStatus.BUDGET_EXCEEDED
                deadline = time.monotonic() + config.request_timeout_s + 5
        recorder.tick()
    return ending or JobStatus.COMPLETED


def _over_budget(job: LabelingJob) -> bool:
    return job.budget_usd is not None and job.cost_usd >= job.budget_usd


def _outcome(ref: ray.ObjectRef, item: LabelItem) -> LabelOutcome:
    try:
        return ray.get(ref)
    except RayError as exc:  # the labeler died (it is restarted); this feature failed
        return LabelOutcome(
            item.feature_id,
            item.feature_index,
            OutcomeStatus.FAILED,
            error=f"labeling worker failed: {type(exc).__name__}: {str(exc)[:500]}",
        )


def _no_examples(stats: FeatureStats) -> LabelOutcome:
    return LabelOutcome(
        stats.feature_id,
        stats.index,
        OutcomeStatus.FAILED,
        error=f"feature {stats.index} has no examples in the artifact store; re-run its "
        "extraction if its example files are missing",
    )


def _ending_message(job: LabelingJob, ending: JobStatus) -> str | None:
    missing = job.features_total - job.features_labeled - job.features_failed
    if ending == JobStatus.CANCELLED:
        rerun = f"; run it again with --job-id {job.id} to label the {missing} left"
        return "cancelled" + (rerun if missing else "")
    if ending == JobStatus.BUDGET_EXCEEDED:
        return (
            f"budget of ${job.budget_usd:.4f} spent (${job.cost_usd:.4f}); no more requests "
            f"were sent and {missing} features are left (a new job with --only-unlabeled "
            "labels them)"
        )
    return None
