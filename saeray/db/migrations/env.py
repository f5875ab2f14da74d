"""Alembic environment: runs against the engine saeray.db.migrate hands over."""

from alembic import context
from sqlmodel import SQLModel

import saeray.db.tables  # noqa: F401  (registers every table on SQLModel.metadata)

engine = context.config.attributes["engine"]

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        render_as_batch=True,  # SQLite alters tables by copy-and-move
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
