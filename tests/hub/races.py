"""Two transactions raced on PostgreSQL: the first holds its work uncommitted while the second
runs in a thread until it waits on a lock, then the first commits."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Connection, Engine, text

from tests.support import wait_for

T = TypeVar("T")


def waiting_on_a_lock(engine: Engine) -> bool:
    """Whether a session of ``engine``'s PostgreSQL server waits for a lock now."""
    with engine.connect() as conn:
        waiting = conn.execute(
            text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
        )
        return bool(waiting.scalar_one())


def race(
    engine: Engine, first: Callable[[Connection], T], second: Callable[[], object]
) -> tuple[T, object]:
    """``first`` in a transaction held open, then ``second`` in a thread; once the thread waits
    on a lock, the transaction commits: (what ``first`` returned, what ``second`` returned or
    raised). If the thread never waits, the transaction is rolled back and this fails."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(second())
        except BaseException as exc:  # the caller reads it
            outcome.append(exc)

    with engine.connect() as holder:
        held = holder.begin()
        result = first(holder)
        racer = threading.Thread(target=run)
        racer.start()
        try:
            wait_for(lambda: waiting_on_a_lock(engine))
            held.commit()
        finally:
            if held.is_active:
                held.rollback()  # the racer goes on, and the wait above has failed
            racer.join(timeout=10)
    assert not racer.is_alive(), "the second transaction still waits"
    return result, outcome[0]
