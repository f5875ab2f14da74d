"""Labeling throughput against a rate-limited, faulty provider.

A fake OpenAI server (tests/llm_server.py, in its own process) answers every request in
``--latency`` seconds, enforces ``--rpm`` itself (429 + Retry-After past it) and fails
``--fault-rate`` of calls (500, timeouts, malformed JSON, wrong schema). A labeling job
with the same rpm labels ``--features`` features of a fixture extraction through the real
OpenAI SDK, Ray actors and SQLite. The last line printed is one JSON object:

- features, labeled, failed, lost (neither labeled nor recorded as failed; must be 0)
- wall_s: the labeling job's wall time, start-up of its actors included
- achieved_rpm: requests the server admitted per minute of wall_s; limit_rpm; utilisation

    .venv/bin/python -m bench.label                  # 44,000 features, about 8 minutes
    .venv/bin/python -m bench.label --features 2000  # a quick check
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

FAKE_KEY = "sk-bench-not-a-real-key"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=44_000)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--rpm", type=float, default=6000)
    parser.add_argument("--fault-rate", type=float, default=0.1)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temp dir")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="saeray-bench-label-"))
    os.environ.update(
        SAERAY_HOME=str(workdir),
        SAERAY_ARTIFACTS=str(workdir / "artifacts"),
        SAERAY_DATABASE_URL=args.database_url or f"sqlite:///{workdir / 'saeray.db'}",
        OPENAI_API_KEY=FAKE_KEY,  # before Ray starts, so its workers inherit it
    )
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.llm_server",
            f"--latency={args.latency}",
            f"--rpm={args.rpm}",
            f"--fault-rate={args.fault_rate}",
            "--fault-kinds=500,500,timeout,malformed,wrong_schema",
            "--hang=5",
            f"--api-key={FAKE_KEY}",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = json.loads(server.stdout.readline())["url"]  # type: ignore[union-attr]
        print(json.dumps(run(args, url)))
    finally:
        server.terminate()
        server.wait(10)


def run(args: argparse.Namespace, url: str) -> dict:
    import ray
    from sqlalchemy import func
    from sqlmodel import select

    from saeray.artifacts import ArtifactStore
    from saeray.db.engine import session_scope
    from saeray.db.migrate import upgrade
    from saeray.db.tables import FeatureLabel
    from saeray.labeling import LabelingConfig, create_labeling_job, run_labeling_job
    from tests.feature_fixtures import make_extraction

    upgrade()
    with session_scope() as session:
        extraction = make_extraction(
            session, ArtifactStore(), features=args.features, top=5, quantile=2, window=12
        )
        job = create_labeling_job(
            session,
            extraction.id,
            LabelingConfig(
                provider="openai",
                model="gpt-4o-mini",
                base_url=f"{url}/v1",
                rpm=args.rpm,
                concurrency=args.concurrency,
                actors=args.actors,
                request_timeout_s=2.0,
                backoff_base_s=0.5,
                backoff_max_s=4.0,
                max_attempts=6,
                top_examples=5,
                quantile_examples=2,
            ),
        )
    ray.init(num_cpus=2, logging_level="WARNING")
    started = time.monotonic()
    job = run_labeling_job(job.id)
    wall = time.monotonic() - started
    with urllib.request.urlopen(f"{url}/stats") as response:
        server_stats = json.load(response)
    with session_scope() as session:
        recorded = session.exec(
            select(func.count(func.distinct(FeatureLabel.feature_id))).where(
                FeatureLabel.labeling_job_id == job.id
            )
        ).one()
    achieved = server_stats["admitted"] / wall * 60
    per_second = sorted(server_stats["admitted_per_second"])
    return {
        "features": job.features_total,
        "labeled": job.features_labeled,
        "failed": job.features_failed,
        "lost": job.features_total - recorded,
        "status": job.status,
        "wall_s": round(wall, 2),
        "requests": server_stats["admitted"],
        "server_429": server_stats["rate_limited"],
        "server_active_s": round(server_stats["active_s"], 2),
        "median_rpm_per_second": per_second[len(per_second) // 2] * 60 if per_second else 0,
        "faults": server_stats["faults"],
        "achieved_rpm": round(achieved, 1),
        "limit_rpm": args.rpm,
        "utilisation": round(achieved / args.rpm, 4),
    }


if __name__ == "__main__":
    main()
