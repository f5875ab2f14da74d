"""The rate gate: pacing by requests and tokens per minute, pauses every waiter on a 429,
and lets nothing through once closed. Plain asyncio (the Ray actor only wraps it)."""

from __future__ import annotations

import asyncio
import time

import pytest

from saeray.labeling.limiter import Bucket, GateCore, Limits, RateWindow


def run(coroutine):
    return asyncio.run(coroutine)


async def grant_times(gate: GateCore, key: str, count: int, tokens: int = 1) -> list[float]:
    start = time.monotonic()

    async def one() -> float:
        assert await gate.acquire(key, tokens)
        return time.monotonic() - start

    return sorted(await asyncio.gather(*(one() for _ in range(count))))


def test_the_schedule_is_a_short_burst_then_the_steady_pace():
    bucket = Bucket(RateWindow(per_minute=1200), None)  # 20 per second, one per 50 ms
    starts = [bucket.reserve(1, now=100.0) for _ in range(10)]
    assert starts[:6] == [100.0] * 6  # a quarter second of burst
    assert starts[6:] == pytest.approx([100.05, 100.1, 100.15, 100.2])
    assert bucket.reserve(1, now=103.0) == 103.0  # a quiet spell refills it


def test_requests_per_minute_are_paced_in_real_time():
    gate = GateCore({"k": Limits(rpm=1200)})
    times = run(grant_times(gate, "k", 30))
    assert times[-1] >= 24 * 0.05 - 0.01  # 6 at once, then 24 at one per 50 ms
    assert times[-1] < 5.0


def test_keys_have_separate_budgets():
    gate = GateCore({"slow": Limits(rpm=60), "fast": Limits()})

    async def scenario() -> tuple[list[float], list[float]]:
        return await asyncio.gather(grant_times(gate, "slow", 3), grant_times(gate, "fast", 50))

    slow, fast = run(scenario())
    assert fast[-1] < 0.5 < 0.9 < slow[-1]  # unlimited, not held up by the slow key


def test_tokens_per_minute_and_settling_unused_tokens():
    bucket = Bucket(None, RateWindow(per_minute=6000))  # 100 tokens per second
    assert [bucket.reserve(50, now=0.0) for _ in range(3)] == pytest.approx([0.0, 0.25, 0.75])
    gate = GateCore({"k": Limits(tpm=6000)})
    times = run(grant_times(gate, "k", 3, tokens=50))
    assert times[-1] >= 0.74
    # Giving back what a request did not use brings the next slot forward.
    before = bucket.reserve(50, now=0.0)
    bucket.tokens.refund(100)
    assert bucket.reserve(50, now=0.0) < before + 0.5


def test_a_pause_holds_requests_already_waiting_and_new_ones():
    gate = GateCore({"k": Limits(rpm=600)})  # one per 100 ms

    async def scenario() -> list[float]:
        start = time.monotonic()
        waiting = asyncio.gather(*(gate.acquire("k", 1) for _ in range(6)))
        await asyncio.sleep(0.05)
        await gate.pause("k", 0.6)  # a 429 with Retry-After: 0.6 s for everybody
        late = await grant_times(gate, "k", 1)
        assert all(await waiting)
        return [time.monotonic() - start, late[0]]

    total, late = run(scenario())
    assert late > 0.5  # a new request waits out the pause
    assert total > 0.85  # then one per 100 ms again, no burst on the heels of a 429
    assert gate.pauses == 1


def test_the_schedule_after_a_pause_has_no_burst():
    bucket = Bucket(RateWindow(per_minute=600), None)  # one per 100 ms
    bucket.paused_until = 5.0
    bucket.requests.hold_until(5.0)
    assert [bucket.reserve(1, now=1.0) for _ in range(3)] == pytest.approx([5.0, 5.1, 5.2])


def test_closing_releases_every_waiter_without_granting():
    gate = GateCore({"k": Limits(rpm=60)})

    async def scenario() -> tuple[list[bool], bool, float]:
        assert await gate.acquire("k", 1) and await gate.acquire("k", 1)  # the burst
        waiters = asyncio.gather(*(gate.acquire("k", 1) for _ in range(5)))
        resting = asyncio.ensure_future(gate.rest(30))
        await asyncio.sleep(0.05)
        start = time.monotonic()
        await gate.close()
        return await waiters, await resting, time.monotonic() - start

    granted, interrupted, waited = run(scenario())
    assert granted == [False] * 5 and interrupted
    assert waited < 1.0
    assert run(gate.acquire("k", 1)) is False


def test_the_gate_closes_itself_once_the_budget_is_spent():
    gate = GateCore(budget_usd=1.0, spent_usd=0.4)

    async def scenario() -> list[bool]:
        granted = [await gate.acquire("k", 1)]
        await gate.settle("k", 10, 10, 0.5)
        granted.append(await gate.acquire("k", 1))
        await gate.settle("k", 10, 10, 0.2)  # an answer that was in flight: 1.1 spent
        granted.append(await gate.acquire("k", 1))
        return granted

    assert run(scenario()) == [True, True, False]
    assert gate.spent_usd == pytest.approx(1.1)
    assert gate.closed and GateCore(budget_usd=1.0, spent_usd=1.0).closed
