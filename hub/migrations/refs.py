"""References the database checks once per statement on PostgreSQL (migrations 0860, 0930).

The journal's hot references (``journal_entries`` → ``meters``; ``journal_lines`` →
``journal_entries``, ``accounts``; ``posted_usage`` → ``journal_entries``, ``meters``) are not
foreign-key constraints on PostgreSQL: a foreign key checks (and share-locks the referenced
row for) every inserted row, about half of the server's work per journal line.
Statement-level triggers over the inserted rows (transition tables) check them once per
statement instead, and lock nothing (migration 0930; 0860 share-locked each distinct account
or meter). Triggers on ``accounts`` and ``meters`` refuse deleting (or renaming) one that is
referenced, after locking the tables that refer to it in ``SHARE`` mode: that waits for every
transaction inserting into them, and holds off new ones until the delete ends, so an insert
and a delete of the row it names never both commit. Nothing in SMSA deletes either, so the
rare delete pays, not every batch. Journal entries cannot be deleted at all (append-only).
Both raise ``foreign_key_violation`` (SQLSTATE 23503), as the constraints did. SQLite keeps
the constraints. The models still declare them (SQLite, and what they mean), so schema
comparisons leave these out on PostgreSQL (``hub.migrations.compare``).
"""

from __future__ import annotations

# (table, column, referenced table): the references the triggers check on PostgreSQL.
CHECKED = (
    ("journal_entries", "meter_id", "meters"),
    ("journal_lines", "entry_id", "journal_entries"),
    ("journal_lines", "account_id", "accounts"),
    ("posted_usage", "entry_id", "journal_entries"),
    ("posted_usage", "meter_id", "meters"),
)


def constraint_name(table: str, column: str, target: str) -> str:
    return f"fk_{table}_{column}_{target}"
