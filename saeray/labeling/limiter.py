"""The rate limiter every request of a labeling job goes through.

Per provider key it holds a requests-per-minute and a tokens-per-minute budget (GCRA:
each request reserves its slot, so waiters are served in order without polling), a pause
that a 429's Retry-After sets for everyone, and a gate that closes when the job stops,
after which no request is granted. The gate also adds up what answers cost and closes
itself the moment the job's USD budget is spent, so that requests stop at once, not a
round trip through the driver later. In the job it lives in one
Ray actor (saeray.labeling.pool.RateGate) shared by the whole pool; here it is plain
asyncio, so it can be tested without Ray.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

# Requests that may go at once after a quiet spell, as seconds of the per-minute rate.
BURST_S = 0.25


@dataclass(frozen=True)
class Limits:
    rpm: float | None = None
    tpm: float | None = None


class RateWindow:
    """A per-minute budget as a generic cell rate algorithm with reservations."""

    def __init__(self, per_minute: float, burst_s: float = BURST_S) -> None:
        self.interval = 60.0 / per_minute  # seconds per unit
        self.tolerance = max(self.interval, burst_s)  # at least one unit may always go
        self.tat = 0.0  # theoretical arrival time of the next unit

    def earliest(self, now: float) -> float:
        return max(now, self.tat - self.tolerance)

    def take(self, amount: float, start: float) -> None:
        self.tat = max(self.tat, start) + amount * self.interval

    def refund(self, amount: float) -> None:
        self.tat -= amount * self.interval

    def hold_until(self, moment: float) -> None:
        """Nothing before ``moment``, then the steady pace: no burst after a pause."""
        self.tat = max(self.tat, moment + self.tolerance)


@dataclass
class Bucket:
    requests: RateWindow | None
    tokens: RateWindow | None
    paused_until: float = 0.0
    windows: list[RateWindow] = field(init=False)

    def __post_init__(self) -> None:
        self.windows = [w for w in (self.requests, self.tokens) if w is not None]

    def reserve(self, tokens: int, now: float) -> float:
        """Reserve a request of ``tokens`` and return when it may start."""
        start = max([now, self.paused_until] + [w.earliest(now) for w in self.windows])
        if self.requests is not None:
            self.requests.take(1, start)
        if self.tokens is not None:
            self.tokens.take(tokens, start)
        return start


class GateCore:
    def __init__(
        self,
        limits: dict[str, Limits] | None = None,
        *,
        budget_usd: float | None = None,
        spent_usd: float = 0.0,
    ) -> None:
        self._limits = dict(limits or {})
        self._buckets: dict[str, Bucket] = {}
        self.budget_usd = budget_usd
        self.spent_usd = spent_usd
        self._closed = asyncio.Event()
        if budget_usd is not None and spent_usd >= budget_usd:
            self._closed.set()
        self.pauses = 0  # how many 429s moved the pause (for tests and logs)

    def _bucket(self, key: str) -> Bucket:
        if key not in self._buckets:
            limits = self._limits.get(key, Limits())
            self._buckets[key] = Bucket(
                RateWindow(limits.rpm) if limits.rpm else None,
                RateWindow(limits.tpm) if limits.tpm else None,
            )
        return self._buckets[key]

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def acquire(self, key: str, tokens: int) -> bool:
        """Wait for this request's turn; False once the gate is closed (do not send)."""
        bucket = self._bucket(key)
        while not self.closed:
            now = time.monotonic()
            start = bucket.reserve(tokens, now)
            if start > now and await self.rest(start - now):
                return False
            if bucket.paused_until <= time.monotonic():
                return True
            # A 429 paused the key while this request waited: queue again behind the pause.
        return False

    async def pause(self, key: str, seconds: float) -> None:
        """Hold every request of ``key`` for ``seconds`` (a 429's Retry-After)."""
        bucket = self._bucket(key)
        until = time.monotonic() + seconds
        if until > bucket.paused_until:
            self.pauses += 1
            bucket.paused_until = until
            for window in bucket.windows:
                window.hold_until(until)

    async def settle(self, key: str, reserved: int, used: int, cost_usd: float) -> None:
        """Record an answered request: give back the tokens it reserved but did not use
        (or take the excess), and add its cost; past the budget, close."""
        tokens = self._bucket(key).tokens
        if tokens is not None:
            tokens.refund(reserved - used)
        self.spent_usd += cost_usd
        if self.budget_usd is not None and self.spent_usd >= self.budget_usd:
            await self.close()

    async def rest(self, seconds: float) -> bool:
        """Sleep ``seconds`` (a backoff); True if the gate closed meanwhile."""
        try:
            await asyncio.wait_for(self._closed.wait(), timeout=seconds)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        self._closed.set()
