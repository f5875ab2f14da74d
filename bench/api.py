"""Status reads through Ray Serve under concurrent clients.

    .venv/bin/python -m bench.api [--clients 50] [--seconds 30] [--interval 0]
        [--replicas 2] [--max-ongoing 64] [--ingress haproxy|proxy] [--database-url URL]

Starts a local Ray (2 CPUs) and the API on Serve at 127.0.0.1, over a fresh SQLite database
in a temporary folder (or ``--database-url``, upgraded first), with one running extraction
whose process heartbeats every second, as a live job's does. Then ``--clients`` async
clients (one keep-alive connection each; ``--client httpx`` for httpx) read
``GET /api/v1/jobs/{id}`` back to back (or each once per ``--interval`` seconds, as pollers
do) until ``--requests`` reads or ``--seconds`` have passed, after a warm-up. Prints one
JSON object last: latency percentiles (ms), requests per second, errors.

``--ingress haproxy`` (the default, and what ``saeray serve`` and cluster.yaml run) puts
Serve's HAProxy ingress in front of replicas that serve HTTP themselves; ``proxy`` is
Serve's default Python proxy actor, for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def seed_running_job(database_url: str) -> tuple[str, threading.Event]:
    """A running extraction and a thread heartbeating it every second (set the event to
    stop), so status reads see a healthy job and never need to ask Ray."""
    from sqlmodel import Session

    from saeray.db.engine import open_engine
    from saeray.db.tables import SAE, Dataset, ExtractionJob, utcnow
    from saeray.lifecycle import report_progress

    engine = open_engine(database_url)
    with Session(engine, expire_on_commit=False) as session:
        sae = SAE(name="bench", source="local", format="saelens", architecture="relu",
                  path="/bench", d_in=8, d_sae=16)  # fmt: skip
        dataset = Dataset(name="bench", spec="builtin:bench")
        session.add_all([sae, dataset])
        session.flush()
        job = ExtractionJob(sae_id=sae.id, dataset_id=dataset.id, status="extracting",
                            started_at=utcnow(), heartbeat_at=utcnow())  # fmt: skip
        session.add(job)
        session.commit()
        job_id = job.id
    stop = threading.Event()

    def heartbeat() -> None:
        with Session(engine, expire_on_commit=False) as session:
            row = session.get(ExtractionJob, job_id)
            beat = 0
            while not stop.wait(1.0):
                beat += 1
                report_progress(session, row, min(beat / 1000, 1.0))

    threading.Thread(target=heartbeat, daemon=True).start()
    return job_id, stop


class Latencies:
    """Request latencies and errors, shared by the clients of one run."""

    def __init__(self, requests: int, seconds: float, interval: float) -> None:
        self.interval = interval
        self.left = requests
        self.deadline = time.monotonic() + seconds
        self.seconds: list[float] = []
        self.errors = 0
        self.reconnects = 0

    def take(self) -> bool:
        if self.left <= 0 or time.monotonic() >= self.deadline:
            return False
        self.left -= 1
        return True

    async def pause(self, started: float) -> None:
        """With an interval, each client sends one request per interval (a poller),
        else the next at once (a closed loop, which measures saturation)."""
        if self.interval:
            await asyncio.sleep(max(0.0, self.interval - (time.perf_counter() - started)))

    def summary(self, elapsed: float) -> dict:
        ordered = sorted(self.seconds)

        def percentile(p: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000, 2)

        return {
            "requests": len(ordered),
            "errors": self.errors,
            "reconnects": self.reconnects,
            "seconds": round(elapsed, 2),
            "rps": round(len(ordered) / elapsed, 1),
            "p50_ms": percentile(50),
            "p90_ms": percentile(90),
            "p99_ms": percentile(99),
            "max_ms": round(ordered[-1] * 1000, 2),
            "mean_ms": round(statistics.fmean(ordered) * 1000, 2),
        }


async def raw_client(port: int, path: str, stats: Latencies) -> None:
    """HTTP/1.1 keep-alive GETs on one connection, parsed just enough (status line and
    Content-Length): on 2 cores the load generator must not eat the server's CPU. A
    connection the server closes (HAProxy closes idle ones when it reloads) is reopened
    and the request resent, as HTTP clients do for idempotent requests; such retries are
    counted, and their time counts in the request's latency."""
    await asyncio.sleep(random.random() * stats.interval)  # pollers out of step
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while stats.take():
            started = time.perf_counter()
            while True:
                try:
                    writer.write(request)
                    head = await reader.readuntil(b"\r\n\r\n")
                    break
                except (asyncio.IncompleteReadError, ConnectionError):
                    stats.reconnects += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
            stats.seconds.append(time.perf_counter() - started)
            stats.errors += head[9:12] != b"200"
            await stats.pause(started)
    finally:
        writer.close()


async def httpx_client(port: int, path: str, stats: Latencies) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10.0) as http:
        await asyncio.sleep(random.random() * stats.interval)
        while stats.take():
            started = time.perf_counter()
            try:
                ok = (await http.get(path)).status_code == 200
            except httpx.HTTPError:
                ok = False
            stats.seconds.append(time.perf_counter() - started)
            stats.errors += not ok
            await stats.pause(started)


CLIENTS = {"raw": raw_client, "httpx": httpx_client}


async def load(
    port: int, path: str, clients: int, requests: int, seconds: float, kind: str, interval: float
) -> dict:
    stats = Latencies(requests, seconds, interval)
    started = time.monotonic()
    await asyncio.gather(*(CLIENTS[kind](port, path, stats) for _ in range(clients)))
    return stats.summary(time.monotonic() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=1_000_000, help="stop after this many")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument(
        "--interval",
        type=float,
        default=0.0,
        help="seconds between one client's requests (0: back to back, measuring saturation)",
    )
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--max-ongoing", type=int, default=64)
    parser.add_argument("--database-url", default=None)
    parser.add_argument(
        "--ingress",
        choices=["haproxy", "proxy"],
        default="haproxy",
        help="Serve's HAProxy ingress (what `saeray serve` uses) or its Python proxy actor",
    )
    parser.add_argument(
        "--client", choices=sorted(CLIENTS), default="raw", help="load generator (see raw_client)"
    )
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="saeray-bench-"))
    database_url = args.database_url or f"sqlite:///{home}/saeray.db"
    os.environ.update(
        SAERAY_HOME=str(home),
        SAERAY_ARTIFACTS=str(home / "artifacts"),
        SAERAY_DATABASE_URL=database_url,
    )
    os.environ.pop("SAERAY_API_TOKEN", None)
    if args.ingress == "haproxy":
        from saeray.cli.serve import prefer_fast_ingress

        prefer_fast_ingress()

    import ray
    from ray import serve

    from deployments.app import SaerayAPI
    from saeray.db.migrate import upgrade

    upgrade(database_url)
    job_id, stop = seed_running_job(database_url)
    port = free_port()
    ray.init(num_cpus=2, include_dashboard=True, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    deployment = SaerayAPI.options(
        num_replicas=args.replicas, max_ongoing_requests=args.max_ongoing
    )
    serve.run(deployment.bind(), name="saeray-bench", route_prefix="/")
    path = f"/api/v1/jobs/{job_id}"
    try:
        asyncio.run(load(port, path, min(args.clients, 10), args.warmup, 60.0, args.client, 0))
        result = asyncio.run(
            load(port, path, args.clients, args.requests, args.seconds, args.client, args.interval)
        )
    finally:
        stop.set()
        serve.shutdown()
        ray.shutdown()
    result |= {
        "clients": args.clients,
        "replicas": args.replicas,
        "max_ongoing_requests": args.max_ongoing,
        "database": database_url.split(":", 1)[0],
        "route": "GET /api/v1/jobs/{id}",
        "client": args.client,
        "ingress": args.ingress,
        "interval_s": args.interval,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
