"""Shared fixtures: a fresh, migrated database on SQLite and on PostgreSQL.

PostgreSQL tests use ``SAERAY_TEST_POSTGRES_URL`` (default: the local server's ``test``
database). Each test gets a database of its own, created and dropped around it. Locally
they skip, saying why, when no server answers; under CI (``CI`` set) they fail instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from saeray.db.engine import dispose_engines
from saeray.db.migrate import upgrade

POSTGRES_URL = os.environ.get(
    "SAERAY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@contextmanager
def _postgres_database() -> Iterator[str]:
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    name = f"saeray_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        admin.dispose()
        if os.environ.get("CI"):
            raise RuntimeError(f"PostgreSQL at {POSTGRES_URL} is required in CI: {exc}") from exc
        pytest.skip(
            f"no PostgreSQL server answers at {POSTGRES_URL} (set SAERAY_TEST_POSTGRES_URL)"
        )
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        dispose_engines()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def saeray_env(tmp_path, monkeypatch) -> dict[str, str]:
    """SAERAY_HOME and SAERAY_ARTIFACTS in a fresh temporary folder."""
    env = {"SAERAY_HOME": str(tmp_path / "home"), "SAERAY_ARTIFACTS": str(tmp_path / "artifacts")}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("SAERAY_API_TOKEN", raising=False)
    return env


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, saeray_env, monkeypatch) -> Iterator[str]:
    """A fresh database at schema head, on SQLite and on PostgreSQL; also set as
    SAERAY_DATABASE_URL for code that reads the settings."""
    with ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{saeray_env['SAERAY_HOME']}/saeray.db"
        else:
            url = stack.enter_context(_postgres_database())
        upgrade(url)
        monkeypatch.setenv("SAERAY_DATABASE_URL", url)
        yield url
        dispose_engines()


@pytest.fixture
def engine(database_url):
    from saeray.db.engine import open_engine

    return open_engine(database_url)
