"""The saeray HTTP API: a FastAPI app (``create_app``) and the Ray Serve deployment whose
ingress it is.

- ``create_app()`` builds the app against the configured database and refuses to, with
  ``SchemaBehindError``, when that database is behind this code (run `saeray db upgrade`).
  Tests import it directly; Serve calls it on each replica.
- Routes live under ``/api/v1``; the feature browser page is served at ``/``.
- Every route but ``/api/v1/health`` and the page needs ``Authorization: Bearer
  <SAERAY_API_TOKEN>``. With SAERAY_API_TOKEN unset, auth is off: for local use only.
- User mistakes (saeray.errors) become 404 / 409 / 422 / 400, an unreachable Ray 503.

Run it with ``saeray serve``, or ``serve run deployments/serve_config.yaml``.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from ray import serve
from sqlalchemy import text

from deployments.auth import require_token, token_digest
from deployments.deps import Services, ServicesDep
from deployments.routes import (
    datasets,
    extractions,
    features,
    jobs,
    labeling,
    models,
    saes,
    training,
)
from deployments.schemas import HealthOut
from saeray.artifacts import ArtifactStore
from saeray.browser import page_html
from saeray.db.engine import open_engine
from saeray.db.migrate import ensure_schema_current
from saeray.errors import ConflictError, InvalidInputError, NotFoundError, SaerayError
from saeray.settings import Settings, get_settings
from saeray.submit import BackendUnavailableError, JobBackend, RayJobBackend

API_PREFIX = "/api/v1"
# Routes are matched in order: job status, the route pollers hit, comes first.
ROUTERS = (
    jobs.router,
    saes.router,
    datasets.router,
    models.router,
    extractions.router,
    features.router,
    labeling.router,
    training.router,
)
# Most specific first: the first class an error is an instance of decides its status.
ERROR_STATUS: tuple[tuple[type[SaerayError], int], ...] = (
    (NotFoundError, 404),
    (ConflictError, 409),
    (InvalidInputError, 422),
    (BackendUnavailableError, 503),
    (SaerayError, 400),
)


def saeray_error(_request: Request, exc: Exception) -> JSONResponse:
    code = next(code for kind, code in ERROR_STATUS if isinstance(exc, kind))
    return JSONResponse({"detail": str(exc)}, status_code=code)


def create_app(
    settings: Settings | None = None,
    backend: JobBackend | None = None,
    api_token_sha256: str | None = None,
) -> FastAPI:
    """The API app over ``settings``' database (default: the environment's), submitting
    jobs through ``backend`` (default: the Ray cluster this process can reach). Refuses a
    database that is behind. The API token is SAERAY_API_TOKEN, or given as its SHA-256
    (how `saeray serve` hands it to a remote cluster without shipping the token itself)."""
    settings = settings or get_settings()
    engine = ensure_schema_current(open_engine(settings.database_url))
    services = Services(
        settings=settings,
        engine=engine,
        backend=backend or RayJobBackend(),
        artifacts=ArtifactStore(settings.artifacts),
    )
    if settings.api_token is not None:
        api_token_sha256 = token_digest(settings.api_token)
    return build_app(services, api_token_sha256)


def build_app(services: Services | None, api_token_sha256: str | None = None) -> FastAPI:
    """The app's routes over ``services``. Without services it only describes itself
    (``app.openapi()``, e.g. to generate a client); every other route would fail."""
    app = FastAPI(
        title="saeray",
        version="1",
        summary="Extract, label and browse sparse-autoencoder features on Ray.",
    )
    app.state.services = services
    app.state.api_token_sha256 = api_token_sha256
    app.add_exception_handler(SaerayError, saeray_error)
    api = APIRouter(prefix=API_PREFIX)
    api.add_api_route("/health", health, methods=["GET"], response_model=HealthOut, tags=["health"])
    for router in ROUTERS:
        api.include_router(router, dependencies=[Depends(require_token)])
    app.include_router(api)
    app.add_api_route("/", browser, methods=["GET"], include_in_schema=False)
    app.add_api_route("/browser", browser, methods=["GET"], include_in_schema=False)
    return app


def health(services: ServicesDep) -> HealthOut:
    """Liveness and database reachability; needs no token."""
    with services.engine.connect() as connection:
        connection.execute(text("SELECT 1"))
    return HealthOut(status="ok", database="ok")


def browser() -> HTMLResponse:
    """The feature browser: one page that talks to this API."""
    return HTMLResponse(page_html())


@serve.deployment(
    name="saeray-api",
    # A replica is one Python process, bound by its GIL: two use two cores (on the 2-core
    # test machine, 2 replicas served ~1.8x the status reads of 1, and 3 fewer than 2).
    num_replicas=2,
    # Routes are short: a status read is one indexed row. Most run in the replica's thread
    # pool, so many may be in flight at once without one waiting on another.
    max_ongoing_requests=64,
    # The API waits on the database, it does not compute: it reserves no CPU, which on a
    # small machine is left to the jobs (an extraction needs a reader and an encoder).
    ray_actor_options={"num_cpus": 0},
    # A log line per request cost a fifth of a status read's CPU. The ingress (HAProxy)
    # logs requests; turn this on in serve_config.yaml to see them in the replica's log.
    logging_config={"enable_access_log": False},
)
@serve.ingress()
class SaerayAPI:
    """The Serve deployment; the token arrives as its digest (see create_app)."""

    def __init__(self, api_token_sha256: str | None = None) -> None:
        self.api_token_sha256 = api_token_sha256

    def __serve_build_asgi_app__(self) -> FastAPI:
        return create_app(api_token_sha256=self.api_token_sha256)


# For `serve run deployments.app:api` and serve_config.yaml.
api = SaerayAPI.bind()
