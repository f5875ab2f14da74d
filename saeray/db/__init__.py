"""Database access: the tables, engines and sessions, and the schema-version check."""

from saeray.db.engine import open_engine, session_scope
from saeray.db.migrate import SchemaBehindError, ensure_schema_current, upgrade

__all__ = ["open_engine", "session_scope", "ensure_schema_current", "upgrade", "SchemaBehindError"]
