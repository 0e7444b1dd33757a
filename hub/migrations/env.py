"""Alembic environment: runs on the connection ``hub.migrations.migrate`` passes in, or on
``sqlalchemy.url`` from alembic.ini when run from the command line."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

import hub.models
from hub.db import make_engine
from hub.migrations.compare import include_object

target_metadata = hub.models.metadata


def run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_object=include_object(connection.dialect.name),
    )
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url") or "sqlite:///smsa-hub.db"
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            run(conn)
    finally:
        engine.dispose()


main()
