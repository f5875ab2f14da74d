"""The labeling pool on Ray: async labeler actors and the one rate gate they share.

The gate is a named actor per job (``saeray-labeling-<job id>`` in namespace ``saeray``),
owned by the job's driver, so it dies with it. Because a name can be taken only once,
creating it is also the job's lock: a second driver for the same job id on the same
cluster is refused while the first lives. Labelers hold the provider clients (keys read
from the cluster's environment, in the actor) and label features concurrently; they use
no CPU reservation since they wait on the network.
"""

from __future__ import annotations

import random
import time

import ray
from ray.actor import ActorHandle

from saeray.errors import ConflictError
from saeray.labeling.attempts import RetryPolicy, label_item
from saeray.labeling.config import ProviderSpec
from saeray.labeling.items import LabelItem, LabelOutcome
from saeray.labeling.limiter import GateCore, Limits
from saeray.labeling.pricing import Price
from saeray.labeling.providers.base import ProviderSetupError, RequestOptions, make_provider

NAMESPACE = "saeray"
GATE_CONCURRENCY = 100_000  # every waiting request is a coroutine in the gate


def gate_name(job_id: str) -> str:
    return f"saeray-labeling-{job_id}"


@ray.remote(num_cpus=0)
class RateGate:
    """GateCore in an actor: one limiter for the whole pool."""

    def __init__(
        self, limits: dict[str, Limits], budget_usd: float | None, spent_usd: float
    ) -> None:
        self.core = GateCore(limits, budget_usd=budget_usd, spent_usd=spent_usd)

    async def acquire(self, key: str, tokens: int) -> bool:
        return await self.core.acquire(key, tokens)

    async def pause(self, key: str, seconds: float) -> None:
        await self.core.pause(key, seconds)

    async def settle(self, key: str, reserved: int, used: int, cost_usd: float) -> None:
        await self.core.settle(key, reserved, used, cost_usd)

    async def rest(self, seconds: float) -> bool:
        return await self.core.rest(seconds)

    async def close(self) -> None:
        await self.core.close()


class RemoteGate:
    """The Gate protocol over a RateGate handle, for code running in a labeler."""

    def __init__(self, handle: ActorHandle, limits: dict[str, Limits], budgeted: bool) -> None:
        self.handle = handle
        self.counts_tokens = {key for key, limit in limits.items() if limit.tpm}
        self.budgeted = budgeted

    async def acquire(self, key: str, tokens: int) -> bool:
        return await self.handle.acquire.remote(key, tokens)

    async def pause(self, key: str, seconds: float) -> None:
        await self.handle.pause.remote(key, seconds)

    async def settle(self, key: str, reserved: int, used: int, cost_usd: float) -> None:
        if self.budgeted or key in self.counts_tokens:
            # Not waited for; the gate handles one caller's calls in order, so this lands
            # before this labeler's next request is granted.
            self.handle.settle.remote(key, reserved, used, cost_usd)

    async def rest(self, seconds: float) -> bool:
        return await self.handle.rest.remote(seconds)


@ray.remote(num_cpus=0)
class Labeler:
    def __init__(
        self,
        chain: list[ProviderSpec],
        options: RequestOptions,
        policy: RetryPolicy,
        prices: dict[str, Price | None],
        job_id: str,
        limits: dict[str, Limits],
        budgeted: bool,
    ) -> None:
        self.setup_error: str | None = None
        try:
            self.chain = [make_provider(spec, options) for spec in chain]
        except ProviderSetupError as exc:
            self.setup_error = str(exc)
        gate = ray.get_actor(gate_name(job_id), namespace=NAMESPACE)
        self.gate = RemoteGate(gate, limits, budgeted)
        self.policy = policy
        self.prices = prices
        self.rng = random.Random()

    async def ready(self) -> str | None:
        """None when the providers are usable, else why not."""
        return self.setup_error

    async def label(self, item: LabelItem) -> LabelOutcome:
        return await label_item(item, self.chain, self.gate, self.policy, self.prices, self.rng)


def start_gate(
    job_id: str,
    limits: dict[str, Limits],
    budget_usd: float | None,
    spent_usd: float,
    *,
    wait_s: float = 15.0,
) -> ActorHandle:
    """Create the job's gate, which also locks the job id on this cluster. A gate left by
    a driver that just died is released by Ray within moments, so it is waited for."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return RateGate.options(
                name=gate_name(job_id), namespace=NAMESPACE, max_concurrency=GATE_CONCURRENCY
            ).remote(limits, budget_usd, spent_usd)
        except ValueError as exc:
            if time.monotonic() > deadline:
                raise ConflictError(
                    f"labeling job {job_id} is being run by another driver on this cluster; "
                    f"stop it first (`ray job stop {job_id}`)"
                ) from exc
            time.sleep(0.5)


def start_labelers(
    count: int,
    per_actor_concurrency: int,
    chain: list[ProviderSpec],
    options: RequestOptions,
    policy: RetryPolicy,
    prices: dict[str, Price | None],
    job_id: str,
    limits: dict[str, Limits],
    budgeted: bool,
) -> list[ActorHandle]:
    """Labelers find the job's gate by name (so a restarted one finds it too)."""
    return [
        Labeler.options(max_concurrency=per_actor_concurrency, max_restarts=2).remote(
            chain, options, policy, prices, job_id, limits, budgeted
        )
        for _ in range(count)
    ]


def stop_actors(actors: list[ActorHandle]) -> None:
    for actor in actors:
        ray.kill(actor, no_restart=True)
