"""What schema comparisons (``alembic check``, the migration tests) leave out on PostgreSQL,
where its schema differs from the models on purpose:

* the journal's foreign keys that statement-level triggers check instead (``hub.migrations.refs``,
  migration 0860);
* the journal entries' unique idempotency keys and reversal links, partial unique indexes there
  (unique where set, migration 0940) and constraints in the models and on SQLite.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hub.migrations.refs import CHECKED, constraint_name

PARTIAL_UNIQUE = frozenset({"uq_journal_entries_idempotency_key", "uq_journal_entries_reverses_id"})


def include_object(dialect: str) -> Callable[[Any, str | None, str, bool, Any], bool]:
    """Alembic's filter for a database of ``dialect``: on PostgreSQL, not the foreign keys that
    triggers replace (the reflected schema lacks them, the models declare them), nor the unique
    constraints that are partial unique indexes there."""
    if dialect != "postgresql":
        return lambda *_: True
    skipped = {constraint_name(*ref) for ref in CHECKED}

    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        del obj, reflected, compare_to
        if type_ == "foreign_key_constraint":
            return name not in skipped
        return type_ not in ("unique_constraint", "index") or name not in PARTIAL_UNIQUE

    return include
