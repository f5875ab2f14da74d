"""Engines and sessions, with database errors turned into one clear line."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlmodel import Session, create_engine

from saeray.errors import SaerayError
from saeray.settings import get_settings

SUPPORTED_DIALECTS = ("sqlite", "postgresql")

_engines: dict[str, Engine] = {}


def _enable_sqlite_foreign_keys(dbapi_connection, _record) -> None:  # noqa: ANN001
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _build_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise SaerayError(
            f"SAERAY_DATABASE_URL {url!r} is not a database URL; use e.g. "
            "'sqlite:////path/saeray.db' or 'postgresql+psycopg://user@host:5432/db'"
        ) from exc
    if parsed.get_backend_name() not in SUPPORTED_DIALECTS:
        raise SaerayError(
            f"database dialect {parsed.get_backend_name()!r} is not supported; "
            "use sqlite:///... or postgresql+psycopg://..."
        )
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    try:
        if parsed.get_backend_name() == "sqlite":
            engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
            event.listen(engine, "connect", _enable_sqlite_foreign_keys)
        else:
            engine = create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)
    except NoSuchModuleError as exc:
        raise SaerayError(
            f"database driver for {parsed.drivername!r} is not installed; "
            "use sqlite:///... or postgresql+psycopg://..."
        ) from exc
    return engine


def check_connection(engine: Engine) -> None:
    """Fail with one clear line if the database does not answer."""
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise SaerayError(
            f"cannot reach the database at {engine.url.render_as_string(hide_password=True)}: "
            f"{reason}; check SAERAY_DATABASE_URL and that the server is running"
        ) from exc


def open_engine(url: str | None = None) -> Engine:
    """The engine for ``url`` (default: the settings' database), one per URL per process."""
    url = url or get_settings().database_url
    if url not in _engines:
        engine = _build_engine(url)
        check_connection(engine)
        _engines[url] = engine
    return _engines[url]


def dispose_engines() -> None:
    """Close every pooled connection (tests, and before a process forks)."""
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()


@contextmanager
def session_scope(engine: Engine | None = None) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    with Session(engine or open_engine(), expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
