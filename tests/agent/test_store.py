"""The agent's store: one connection, transactions that nest as savepoints, hooks."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.errors import StoreError
from agent.store import AgentStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AgentStore]:
    s = AgentStore(tmp_path / "agent.db")
    with s.transaction() as conn:
        conn.execute("CREATE TABLE t (v INTEGER)")
    yield s
    s.close()


def values(store: AgentStore) -> list[int]:
    with store.read() as conn:
        return [r[0] for r in conn.execute("SELECT v FROM t ORDER BY v")]


def test_wal_and_full_sync(store: AgentStore) -> None:
    with store.read() as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_a_nested_transaction_joins_the_outer_one(store: AgentStore) -> None:
    committed: list[str] = []
    store.conn.set_trace_callback(lambda sql: committed.append(sql) if sql == "COMMIT" else None)
    with store.transaction() as conn:
        conn.execute("INSERT INTO t VALUES (1)")
        with store.transaction() as inner:
            inner.execute("INSERT INTO t VALUES (2)")
            store.after_commit(lambda: committed.append("hook"))
        assert committed == []
    assert committed == ["COMMIT", "hook"]
    assert values(store) == [1, 2]


def test_an_inner_failure_undoes_only_its_own_part(store: AgentStore) -> None:
    rolled: list[int] = []
    store.on_rollback(lambda: rolled.append(1))
    with store.transaction() as conn:
        conn.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(ValueError), store.transaction() as inner:
            inner.execute("INSERT INTO t VALUES (2)")
            raise ValueError("inner")
        conn.execute("INSERT INTO t VALUES (3)")
    assert values(store) == [1, 3] and rolled == [1]


def test_an_outer_failure_undoes_everything_and_drops_the_hooks(store: AgentStore) -> None:
    ran: list[str] = []
    with pytest.raises(StoreError), store.transaction() as conn:
        conn.execute("INSERT INTO t VALUES (1)")
        with store.transaction() as inner:
            inner.execute("INSERT INTO t VALUES (2)")
            store.after_commit(lambda: ran.append("hook"))
        conn.execute("INSERT INTO nowhere VALUES (3)")  # sqlite3.Error -> StoreError
    assert values(store) == [] and ran == []
    store.after_commit(lambda: ran.append("now"))  # no transaction open: at once
    assert ran == ["now"]


def test_other_threads_wait_for_the_open_transaction(store: AgentStore) -> None:
    seen: list[list[int]] = []
    inside = threading.Event()

    def reader() -> None:
        inside.wait(5)
        seen.append(values(store))

    t = threading.Thread(target=reader)
    t.start()
    with store.transaction() as conn:
        conn.execute("INSERT INTO t VALUES (1)")
        inside.set()
        t.join(0.2)
        conn.execute("INSERT INTO t VALUES (2)")
    t.join(5)
    assert seen == [[1, 2]], "a reader saw half a transaction"


def test_a_second_process_sees_only_commits(store: AgentStore, tmp_path: Path) -> None:
    with store.transaction() as conn:
        conn.execute("INSERT INTO t VALUES (1)")
        with sqlite3.connect(tmp_path / "agent.db") as other:
            assert other.execute("SELECT count(*) FROM t").fetchone()[0] == 0
    with sqlite3.connect(tmp_path / "agent.db") as other:
        assert other.execute("SELECT count(*) FROM t").fetchone()[0] == 1
