"""Scale-out (issue 21): on PostgreSQL, a NOTIFY on channel ``smsa_events`` after every
statement that inserts events, so each API process's event streams wake at once whichever
process (API, ingest, jobs) wrote them (``hub.event_bell``). Nothing on SQLite (one process).

Revision ID: 0860
Revises: 0700
Create Date: 2026-12-04 22:15:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0860"
down_revision: str | None = "0700"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "CREATE FUNCTION smsa_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN PERFORM pg_notify('smsa_events', ''); RETURN NULL; END $$"
    )
    op.execute(
        "CREATE TRIGGER events_notify AFTER INSERT ON events "
        "FOR EACH STATEMENT EXECUTE FUNCTION smsa_events_notify()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS events_notify ON events")
    op.execute("DROP FUNCTION IF EXISTS smsa_events_notify()")
