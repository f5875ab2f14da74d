"""``saeray serve``: the HTTP API and feature browser on Ray Serve.

Without ``--address`` it starts a local Ray (jobs then run with this Python) and serves
on 127.0.0.1; with one it deploys onto that cluster, whose nodes read their own
SAERAY_* environment (cluster.env). Prints the URL, then serves until Ctrl-C or SIGTERM, and
removes the application (with ``--detach`` it returns at once and leaves it running on
the cluster).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from saeray.db.engine import open_engine
from saeray.db.migrate import ensure_schema_current
from saeray.settings import get_settings

APP_NAME = "saeray"
# Ray Serve's high-throughput ingress (Ray >= 2.55): HAProxy takes the HTTP port and
# forwards to replicas that serve HTTP themselves, instead of every request going through
# the Python proxy actor and two actor calls. On the 2-core bench machine, status reads
# went from ~260 to ~2,000 per second (bench/api.py). Ray's processes read these when they
# start, so they belong in the environment of `ray start` (cluster.yaml) or of the process
# that starts a local Ray.
FAST_INGRESS_ENV = {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}


def prefer_fast_ingress() -> None:
    """Use the fast ingress in a local Ray started after this, unless the user chose."""
    for name, value in FAST_INGRESS_ENV.items():
        os.environ.setdefault(name, value)


def use_this_python_for_jobs() -> None:
    """Job entrypoints are ``python -m jobs.<kind>``: on a local cluster started from
    here, ``python`` must be this interpreter (a virtualenv need not be activated)."""
    here = os.path.dirname(sys.executable)
    path = os.environ.get("PATH", "")
    if path.split(os.pathsep)[0] != here:
        os.environ["PATH"] = here + os.pathsep + path


def start(address: str | None, host: str, port: int, replicas: int = 2) -> str:
    """Deploy the API on Serve (starting a local Ray when ``address`` is None); its URL."""
    import ray
    from ray import serve

    from deployments.app import SaerayAPI
    from deployments.auth import token_digest

    settings = get_settings()
    ensure_schema_current(open_engine(settings.database_url))  # fail here, not in a replica
    if address is None:
        use_this_python_for_jobs()
    if not ray.is_initialized():
        if address is None:
            prefer_fast_ingress()  # read by the local Ray's processes as they start
        ray.init(address=address, namespace="saeray", log_to_driver=False)
    serve.start(http_options={"host": host, "port": port})
    digest = token_digest(settings.api_token) if settings.api_token else None
    serve.run(
        SaerayAPI.options(num_replicas=replicas).bind(api_token_sha256=digest),
        name=APP_NAME,
        route_prefix="/",
    )
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return f"http://{shown}:{port}"


def _serve(args: argparse.Namespace) -> int:
    url = start(args.address, args.host, args.port, args.replicas)
    auth = "bearer token required" if get_settings().api_token else "auth off (no token set)"
    print(f"saeray API at {url}/api/v1 ({auth}); browser {url}/ ; docs {url}/docs", flush=True)
    if args.detach:
        return 0
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    from ray import serve

    serve.delete(APP_NAME)  # a local Ray, started here, ends with this process
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser(
        "serve", help="serve the HTTP API and feature browser on Ray Serve"
    )
    serve.add_argument(
        "--address",
        default=None,
        help="Ray cluster to deploy on (e.g. auto, ray://head:10001); default a local Ray",
    )
    serve.add_argument("--host", default="127.0.0.1", help="HTTP host (0.0.0.0 for all)")
    serve.add_argument("--port", type=int, default=8000, help="HTTP port")
    serve.add_argument(
        "--replicas", type=int, default=2, help="API replicas (processes; 2 suit 2 cores)"
    )
    serve.add_argument(
        "--detach", action="store_true", help="return once deployed (remote clusters)"
    )
    serve.set_defaults(func=_serve)
