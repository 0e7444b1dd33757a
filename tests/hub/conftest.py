"""Hub test fixtures: a real PostgreSQL server (once per session) and fresh migrated databases
on SQLite and PostgreSQL. Tests that take ``engine`` or ``db_url`` run on both backends."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine

from hub.db import make_engine, migrate
from tests.support import free_port

SHARED_DB = "smsa_shared"


@dataclass
class PgServer:
    port: int
    user: str

    def url(self, dbname: str) -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, template: str | None = None) -> str:
        """A new database (empty, or a copy of ``template``); returns its name."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        dsn = f"host=127.0.0.1 port={self.port} user={self.user} dbname=postgres"
        with psycopg.connect(dsn, autocommit=True) as conn:
            suffix = f" TEMPLATE {template}" if template else ""
            conn.execute(f"CREATE DATABASE {name}{suffix}".encode())
        return name

    def wipe(self, dbname: str) -> None:
        """Empty every table but alembic_version; row triggers (append-only journal, foreign
        keys) are off for this one transaction. Much faster than a new database per test."""
        dsn = f"host=127.0.0.1 port={self.port} user={self.user} dbname={dbname}"
        with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction():
            conn.execute(b"SET LOCAL lock_timeout = '10s'")
            conn.execute(b"SET LOCAL session_replication_role = replica")
            tables = conn.execute(
                b"SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                b"AND tablename <> 'alembic_version'"
            ).fetchall()
            for (table,) in tables:
                conn.execute(f'DELETE FROM "{table}"'.encode())


def _pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not found:
        pytest.fail("PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin")
    return Path(found[-1]).parent


def _as_server_user(cmd: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: run them as ``postgres`` then."""
    if os.geteuid() != 0:
        return cmd
    if shutil.which("runuser") is None:
        pytest.fail("running as root and runuser is missing: cannot start PostgreSQL")
    return ["runuser", "-u", "postgres", "--", *cmd]


def _run(cmd: list[str]) -> None:
    done = subprocess.run(_as_server_user(cmd), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.fail(f"{Path(cmd[0]).name} failed ({done.returncode}): {done.stderr.strip()}")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A throwaway PostgreSQL server on 127.0.0.1 and a free port, removed at the end."""
    bindir = _pg_bin()
    root = Path(tempfile.mkdtemp(prefix="smsa-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    root.chmod(0o700)
    data, log = root / "data", root / "server.log"
    port = free_port()
    _run([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
          "--locale=C", "--no-sync"])  # fmt: skip
    opts = (
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off -c max_connections=100"
    )
    _run([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", opts, "-w", "-t", "30",
          "start"])  # fmt: skip
    try:
        server = PgServer(port=port, user="postgres")
        shared = server.create_database()
        migrate(server.url(shared))
        with psycopg.connect(
            f"host=127.0.0.1 port={port} user=postgres dbname=postgres", autocommit=True
        ) as conn:
            conn.execute(f"ALTER DATABASE {shared} RENAME TO {SHARED_DB}".encode())
        yield server
    finally:
        subprocess.run(
            _as_server_user([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def empty_db_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL to an empty database (no schema) on the test's backend."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'hub.db'}"
    server: PgServer = request.getfixturevalue("pg_server")
    return server.url(server.create_database())


@pytest.fixture
def db_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL to an empty database migrated to head on the test's backend (PostgreSQL: one
    migrated database per session, wiped before each test)."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'hub.db'}"
        migrate(url)
        return url
    server: PgServer = request.getfixturevalue("pg_server")
    server.wipe(SHARED_DB)
    return server.url(SHARED_DB)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    try:
        yield eng
    finally:
        eng.dispose()


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    """A migrated hub database in a real SQLite file of the test's own."""
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    migrate(url)
    engine = make_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()
