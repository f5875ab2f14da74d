"""Bearer-token auth: required on every route but health (and the page) when
SAERAY_API_TOKEN is set, off when it is not."""

from __future__ import annotations

import pytest

from tests.api_helpers import api_client

TOKEN = "s3cret-token"


@pytest.fixture
def client(database_url, monkeypatch):
    monkeypatch.setenv("SAERAY_API_TOKEN", TOKEN)
    with api_client() as client:
        yield client


def api_paths(client) -> list[str]:
    """Every GET route of the schema with its parameters filled in."""
    paths = client.app.openapi()["paths"]
    return [
        path.replace("{", "").replace("}", "")
        for path, operations in paths.items()
        if "get" in operations
    ]


def test_every_route_but_health_needs_the_token(client):
    paths = api_paths(client)
    assert len(paths) > 10
    for path in paths:
        response = client.get(path)
        if path == "/api/v1/health":
            assert response.status_code == 200
            continue
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"] == "Bearer"
        assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get(path, headers={"Authorization": TOKEN}).status_code == 401
    assert client.post("/api/v1/training-jobs", json={}).status_code == 401


def test_the_right_token_opens_every_route(client):
    headers = {"Authorization": f"Bearer {TOKEN}"}
    for path in api_paths(client):
        assert client.get(path, headers=headers).status_code != 401, path
    assert client.get("/api/v1/saes", headers=headers).json() == []


def test_the_page_and_the_schema_need_no_token(client):
    assert client.get("/").status_code == 200
    assert client.get("/openapi.json").status_code == 200


def test_auth_is_off_without_a_token(database_url):
    with api_client() as client:
        assert client.get("/api/v1/saes").status_code == 200


def test_the_schema_declares_the_bearer_scheme(client):
    schema = client.app.openapi()
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert "security" not in schema["paths"]["/api/v1/health"]["get"]
    assert schema["paths"]["/api/v1/saes"]["get"]["security"] == [{"HTTPBearer": []}]
