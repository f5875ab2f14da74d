"""Alembic migrations, driven from code so no alembic.ini is needed.

``upgrade`` brings any database to head (a no-op when it is there already);
``ensure_schema_current`` is what every entrypoint calls before touching the database.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from saeray.db.engine import open_engine
from saeray.errors import SaerayError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


class SchemaBehindError(SaerayError):
    """The database is older than this code."""


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def head_revision() -> str:
    return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head() or ""


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(url: str | None = None) -> tuple[str | None, str]:
    """Upgrade the database to head; returns (revision before, revision after)."""
    engine = open_engine(url)
    before = current_revision(engine)
    if before != head_revision():
        command.upgrade(alembic_config(engine), "head")
    return before, current_revision(engine) or ""


def ensure_schema_current(engine: Engine | None = None) -> Engine:
    """Refuse to run against a database that is behind this code."""
    engine = engine or open_engine()
    current, head = current_revision(engine), head_revision()
    if current != head:
        where = engine.url.render_as_string(hide_password=True)
        state = "has no saeray schema" if current is None else f"is at revision {current}"
        raise SchemaBehindError(
            f"the database at {where} {state}, this code needs {head}; "
            "run `saeray db upgrade` first"
        )
    return engine
