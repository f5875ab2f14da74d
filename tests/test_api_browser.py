"""The feature browser page, the `saeray serve` command line and the Serve config file."""

from __future__ import annotations

import argparse
import importlib
import re
from pathlib import Path

import yaml
from ray.serve.deployment import Application
from ray.serve.schema import ServeDeploySchema

from deployments.app import SaerayAPI, build_app
from saeray.browser import page_html
from saeray.cli import serve as serve_command
from tests.api_helpers import api_client

TEMPLATE = re.compile(r"(?:api\(|\$\{API\})`?(/[^`?\"']*)")


def test_the_page_is_served_without_a_token(database_url, monkeypatch):
    monkeypatch.setenv("SAERAY_API_TOKEN", "t")
    with api_client() as client:
        for path in ("/", "/browser"):
            response = client.get(path)
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/html")
            assert "saeray feature browser" in response.text


def test_the_page_calls_only_routes_that_exist():
    paths = build_app(None).openapi()["paths"]
    patterns = [re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$") for path in paths]
    used = {match.group(1) for match in TEMPLATE.finditer(page_html())}
    assert {"/extractions", "/features/${id}", "/jobs/${jobId}/events"} <= used, used
    for path in used:
        concrete = "/api/v1" + re.sub(r"\$\{[^}]+\}", "x", path)
        assert any(pattern.match(concrete) for pattern in patterns), path


def test_serve_command_line():
    parser = argparse.ArgumentParser()
    serve_command.register(parser.add_subparsers())
    args = parser.parse_args(["serve", "--address", "auto", "--port", "9000"])
    assert (args.address, args.host, args.port, args.replicas) == ("auto", "127.0.0.1", 9000, 2)
    assert args.func is serve_command._serve


def test_the_serve_config_deploys_the_api():
    path = Path(__file__).parents[1] / "deployments" / "serve_config.yaml"
    config = ServeDeploySchema.model_validate(yaml.safe_load(path.read_text()))
    (application,) = config.applications
    module, _, name = application.import_path.partition(":")
    assert isinstance(getattr(importlib.import_module(module), name), Application)
    (deployment,) = application.deployments
    assert deployment.name == SaerayAPI.name == "saeray-api"
