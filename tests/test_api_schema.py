"""The OpenAPI schema as a contract: complete, fuzzed with schemathesis (no generated
request may get a 500, and every response must match the schema), and the app's refusal
to start on a database that is behind."""

from __future__ import annotations

import huggingface_hub.constants
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from deployments.app import build_app
from saeray.db.engine import dispose_engines
from saeray.db.migrate import upgrade
from tests.api_helpers import api_client, seed

# The schema is read from an app without a database (the routes are the same); each
# generated request goes to a fresh app over a seeded SQLite database.
schema = schemathesis.openapi.from_asgi("/openapi.json", build_app(None))


@pytest.fixture(scope="module")
def fuzzed_app(tmp_path_factory):
    """One seeded SQLite database and app for every operation (requests may change it:
    whatever state they leave, no later request may get a 500 either)."""
    home = tmp_path_factory.mktemp("fuzz")
    url = f"sqlite:///{home}/saeray.db"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SAERAY_HOME", str(home))
        env.setenv("SAERAY_ARTIFACTS", str(home / "artifacts"))
        env.setenv("SAERAY_DATABASE_URL", url)
        env.delenv("SAERAY_API_TOKEN", raising=False)
        # A generated hub id must not go online (the constant is read once, at import).
        env.setenv("HF_HUB_OFFLINE", "1")
        env.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        upgrade(url)
        seed(url)
        yield api_client().app
        dispose_engines()


@schema.parametrize()
@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_generated_request_gets_a_server_error(case, fuzzed_app):
    # Generous: the first model or SAE registered in a process imports torch and transformers.
    response = case.call(app=fuzzed_app, timeout=120)
    case.validate_response(
        response,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )


def test_every_route_is_typed():
    openapi = build_app(None).openapi()
    for path, operations in openapi["paths"].items():
        for method, operation in operations.items():
            where = f"{method.upper()} {path}"
            success = [code for code in operation["responses"] if code.startswith("2")]
            assert len(success) == 1, where
            (code,) = success
            if code == "204":
                continue
            content = operation["responses"][code]["content"]
            (media,) = content.values()
            assert media["schema"], where
            assert media["schema"] != {}, where
            if method in ("post", "patch") and "requestBody" in operation:
                body = operation["requestBody"]["content"]["application/json"]["schema"]
                assert "$ref" in body, where


def test_the_app_refuses_a_database_that_is_behind(saeray_env, monkeypatch):
    from saeray.db.migrate import SchemaBehindError

    monkeypatch.setenv("SAERAY_DATABASE_URL", f"sqlite:///{saeray_env['SAERAY_HOME']}/new.db")
    with pytest.raises(SchemaBehindError, match="saeray db upgrade"):
        api_client()
