"""The journal's reference checks stop share-locking rows; deletes lock the journal instead
(issue 21, scale-out; PostgreSQL only, ``hub.migrations.refs``).

Migration 0860 had each statement that inserts journal rows share-lock (``FOR KEY SHARE``)
every distinct account and meter it names, so that a concurrent delete of one waited for it.
A row lock is written into the row and logged: in ``bench.fleet --pg-stats`` those two
``PERFORM ... FOR KEY SHARE`` statements were 121 ms of server time per 10,000 records, 13 %
of all statements' (908 ms). Nothing in SMSA deletes or renames an account or a meter; the
triggers that refuse it are a guard. So the guard pays now: before it looks for references, it
locks the tables that refer to the row in ``SHARE`` mode, which waits for every transaction
that inserted into them and holds off new inserts until it ends. The insert checks keep their
``NOT EXISTS`` test and lock nothing:

* an insert that began before the delete: the delete waits for its commit, then sees its rows
  and is refused;
* a delete that began first: the insert waits for it, then finds the row gone and is refused.

Measured after it (``docs/scaling.md`` 2.6): the two statements are gone and the triggers'
time halved, but the server's CPU per record moved within this machine's noise, as the batch
had already locked most of those rows more strongly.

Revision ID: 0930
Revises: 0920
Create Date: 2026-12-06 00:10:00
"""

import importlib
from collections.abc import Mapping, Sequence

from alembic import op

revision: str = "0930"
down_revision: str | None = "0920"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_0860 = importlib.import_module("hub.migrations.versions.0860_scale_out")


def _unlocked(check: str) -> str:
    """``check`` (an insert check of 0860) without its row locks."""
    return "\n".join(line for line in check.split("\n") if not line.endswith("FOR KEY SHARE;"))


_INSERT_CHECKS = {table: _unlocked(check) for table, check in _0860._INSERT_CHECKS.items()}


def _define(checks: Mapping[str, str], lock: bool) -> None:
    for table, check in checks.items():
        op.execute(_0860.refs_function(table, check))
    for target, referrers in _0860._REFERENCED.items():
        tables = ", ".join(t for t, _ in referrers)
        first = f"  LOCK TABLE {tables} IN SHARE MODE;\n" if lock else ""
        op.execute(_0860.referenced_function(target, referrers, first))


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    _define(_INSERT_CHECKS, lock=True)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    _define(_0860._INSERT_CHECKS, lock=False)
