"""Scale-out (issue 21), on PostgreSQL only (nothing on SQLite, one process):

* the journal's hot references checked once per statement by triggers instead of per row by
  foreign keys, and deleting a referenced account or meter refused (``hub.migrations.refs``);
* a NOTIFY on channel ``smsa_events`` after every
statement that inserts events, so each API process's event streams wake at once whichever
process (API, ingest, jobs) wrote them (``hub.event_bell``). Nothing on SQLite (one process).

Revision ID: 0860
Revises: 0840
Create Date: 2026-12-04 22:15:00
"""

from collections.abc import Sequence

from alembic import op

from hub.migrations.refs import CHECKED, constraint_name

# Per inserting table: the check of its new rows' references (``new_rows``, the statement's
# transition table). Referenced accounts and meters are share-locked once each, as a foreign
# key would lock them per row, so a concurrent delete waits, then is refused (or the insert
# fails if the delete came first). Migration 0930 takes these row locks out again.
_ENTRY = """
  SELECT n.entry_id::text INTO bad FROM (SELECT DISTINCT entry_id FROM new_rows) n
   WHERE NOT EXISTS (SELECT 1 FROM journal_entries e WHERE e.id = n.entry_id) LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION '%(table)s.entry_id %% names no journal entry', bad
      USING ERRCODE = 'foreign_key_violation';
  END IF;"""
_METERS = """
  PERFORM 1 FROM meters WHERE id IN (SELECT DISTINCT meter_id FROM new_rows) FOR KEY SHARE;
  SELECT n.meter_id INTO bad FROM (SELECT DISTINCT meter_id FROM new_rows) n
   WHERE n.meter_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM meters m WHERE m.id = n.meter_id)
   LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION '%(table)s.meter_id %% names no meter', bad
      USING ERRCODE = 'foreign_key_violation';
  END IF;"""
_INSERT_CHECKS = {
    "journal_entries": _METERS,
    "journal_lines": _ENTRY
    + """
  PERFORM 1 FROM accounts WHERE id IN (SELECT DISTINCT account_id FROM new_rows) FOR KEY SHARE;
  SELECT n.account_id INTO bad FROM (SELECT DISTINCT account_id FROM new_rows) n
   WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = n.account_id) LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'journal_lines.account_id %% names no account', bad
      USING ERRCODE = 'foreign_key_violation';
  END IF;""",
    "posted_usage": _ENTRY + _METERS,
}

# Referenced tables: which tables' rows refer to them, by which column.
_REFERENCED = {
    "accounts": (("journal_lines", "account_id"),),
    "meters": (("journal_entries", "meter_id"), ("posted_usage", "meter_id")),
}


def refs_function(table: str, check: str) -> str:
    """The statement that (re)defines ``table``'s insert check, ``check`` (``_INSERT_CHECKS``)."""
    return (
        f"CREATE OR REPLACE FUNCTION smsa_{table}_refs() RETURNS trigger LANGUAGE plpgsql AS $$\n"
        f"DECLARE bad text;\nBEGIN{check % {'table': table}}\n  RETURN NULL;\nEND $$"
    )


def referenced_function(target: str, referrers: Sequence[tuple[str, str]], first: str = "") -> str:
    """The statement that (re)defines the guard refusing to delete or rename a row of
    ``target`` that ``referrers`` ((table, column)) refer to; ``first``: what it does first."""
    checks = "".join(
        f"  IF EXISTS (SELECT 1 FROM {table} WHERE {column} = OLD.id) THEN\n"
        f"    RAISE EXCEPTION '{target[:-1]} % is referenced by {table}', OLD.id\n"
        "      USING ERRCODE = 'foreign_key_violation';\n  END IF;\n"
        for table, column in referrers
    )
    return (
        f"CREATE OR REPLACE FUNCTION smsa_{target}_referenced() RETURNS trigger "
        f"LANGUAGE plpgsql AS $$\nBEGIN\n{first}{checks}"
        "  IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;\n  RETURN NEW;\nEND $$"
    )


revision: str = "0860"
down_revision: str | None = "0840"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column, target in CHECKED:
        op.drop_constraint(constraint_name(table, column, target), table, type_="foreignkey")
    for table, check in _INSERT_CHECKS.items():
        op.execute(refs_function(table, check))
        op.execute(
            f"CREATE TRIGGER {table}_refs AFTER INSERT ON {table} REFERENCING NEW TABLE AS "
            f"new_rows FOR EACH STATEMENT EXECUTE FUNCTION smsa_{table}_refs()"
        )
    for target, referrers in _REFERENCED.items():
        op.execute(referenced_function(target, referrers))
        op.execute(
            f"CREATE TRIGGER {target}_referenced_delete BEFORE DELETE ON {target} "
            f"FOR EACH ROW EXECUTE FUNCTION smsa_{target}_referenced()"
        )
        op.execute(
            f"CREATE TRIGGER {target}_referenced_rename BEFORE UPDATE OF id ON {target} "
            f"FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id) "
            f"EXECUTE FUNCTION smsa_{target}_referenced()"
        )
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
    for target in _REFERENCED:
        op.execute(f"DROP TRIGGER IF EXISTS {target}_referenced_delete ON {target}")
        op.execute(f"DROP TRIGGER IF EXISTS {target}_referenced_rename ON {target}")
        op.execute(f"DROP FUNCTION IF EXISTS smsa_{target}_referenced()")
    for table in _INSERT_CHECKS:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_refs ON {table}")
        op.execute(f"DROP FUNCTION IF EXISTS smsa_{table}_refs()")
    for table, column, target in CHECKED:
        op.create_foreign_key(
            constraint_name(table, column, target), table, target, [column], ["id"]
        )
