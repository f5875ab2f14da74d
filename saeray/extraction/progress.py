"""Keep the job row current while the job runs, and show progress in the job's log.

A background thread writes progress, tokens processed, tokens per second and a heartbeat
every ``interval`` seconds (1 s, so the row is never more than 2 s stale), whatever the
driver is blocked on (actors loading a model, a large merge, writing examples). It also
notices a row ended from outside (e.g. reconciled as failed) and says so through
``ended_elsewhere``, so the job stops instead of working for nothing.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import deque

from sqlalchemy.engine import Engine
from sqlmodel import Session
from tqdm import tqdm

from saeray.db.tables import ExtractionJob
from saeray.lifecycle import is_terminal, report_progress

log = logging.getLogger(__name__)

RATE_WINDOW_S = 10.0  # tokens per second is measured over this much recent time


class ProgressReporter:
    def __init__(self, engine: Engine, job_id: str, *, interval: float = 1.0) -> None:
        self.engine = engine
        self.job_id = job_id
        self.interval = interval
        self.planned = 0
        self.done = 0
        self.ended_elsewhere = threading.Event()
        self._samples: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="saeray-progress", daemon=True)
        self._bar: tqdm | None = None

    def __enter__(self) -> ProgressReporter:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def start_counting(self, planned: int) -> None:
        """Begin the extracting phase: ``planned`` tokens, and a progress bar in the log."""
        with self._lock:
            self.planned = planned
            self._samples.append((time.monotonic(), 0))
        self._bar = tqdm(
            total=planned,
            unit="tok",
            unit_scale=True,
            mininterval=2.0,
            file=sys.stderr,
            desc=f"extract {self.job_id}",
        )

    def advance(self, tokens: int) -> None:
        with self._lock:
            self.done += tokens
            self._samples.append((time.monotonic(), self.done))
        if self._bar is not None:
            self._bar.update(tokens)

    def tokens_per_second(self) -> float:
        with self._lock:
            now = time.monotonic()
            while len(self._samples) > 2 and now - self._samples[1][0] > RATE_WINDOW_S:
                self._samples.popleft()
            if len(self._samples) < 2:
                return 0.0
            (t0, n0), (t1, n1) = self._samples[0], self._samples[-1]
            return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0

    def stop(self) -> None:
        """Stop writing (before the job writes its final status, which must be the last)."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _run(self) -> None:
        with Session(self.engine, expire_on_commit=False) as session:
            while not self._stop.wait(self.interval):
                try:
                    self._write(session)
                except Exception:  # a database hiccup must not kill the job; say so and go on
                    log.exception("could not record the progress of %s", self.job_id)
                    session.rollback()

    def _write(self, session: Session) -> None:
        job = session.get(ExtractionJob, self.job_id, populate_existing=True)
        if job is None or is_terminal(job.status):
            self.ended_elsewhere.set()
            return
        with self._lock:
            done, planned = self.done, self.planned
        progress = min(done / planned, 1.0) if planned else 0.0
        report_progress(
            session,
            job,
            progress,
            tokens_processed=done,
            tokens_planned=planned or job.tokens_planned,
            tokens_per_second=self.tokens_per_second(),
        )
