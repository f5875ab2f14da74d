"""One settings object, read from ``SAERAY_*`` environment variables.

- ``SAERAY_HOME``: where saeray keeps its state; default ``~/.saeray``.
- ``SAERAY_DATABASE_URL``: SQLAlchemy URL; default a SQLite file in the home.
  PostgreSQL: ``postgresql+psycopg://user@host:5432/db``.
- ``SAERAY_ARTIFACTS``: where bulky artifacts (Parquet examples, SAE weights) go; a local
  folder (default ``$SAERAY_HOME/artifacts``) or any URI ``pyarrow.fs`` understands,
  e.g. ``s3://bucket/prefix`` on a cluster.
- ``SAERAY_API_TOKEN``: bearer token the HTTP API requires (unset: no auth, local use).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    artifacts: str
    api_token: str | None

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        home = Path(env.get("SAERAY_HOME") or Path.home() / ".saeray").expanduser().resolve()
        database_url = env.get("SAERAY_DATABASE_URL") or f"sqlite:///{home / 'saeray.db'}"
        artifacts = env.get("SAERAY_ARTIFACTS") or str(home / "artifacts")
        return cls(
            home=home,
            database_url=database_url,
            artifacts=artifacts,
            api_token=env.get("SAERAY_API_TOKEN") or None,
        )

    def as_env(self) -> dict[str, str]:
        """The settings as environment variables, for a job's runtime_env (no secrets)."""
        return {
            "SAERAY_HOME": str(self.home),
            "SAERAY_DATABASE_URL": self.database_url,
            "SAERAY_ARTIFACTS": self.artifacts,
        }


def get_settings() -> Settings:
    """The current settings; read fresh each call so tests and jobs can change the env."""
    return Settings.from_env()
