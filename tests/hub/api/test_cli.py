"""The smsa-hub command line: create-key prints only a key that works, revoke-key, bad args."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from hub.__main__ import main
from hub.settings import HubSettings
from tests.support import free_port, port_open, stop, wait_for

EXE = Path(sys.executable).with_name("smsa-hub")


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [str(EXE)] if EXE.exists() else [sys.executable, "-m", "hub"]
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [*cmd, *args], capture_output=True, text=True, timeout=60, env=full_env, check=False
    )


def main_exit(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``hub.__main__.main`` in-process (a subprocess costs ~2 s of imports): code, out, err."""
    try:
        code = main(list(args))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_customer_key_needs_an_existing_account(
    api_settings: HubSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = main_exit(capsys, "create-key", "--role", "customer", "--db", api_settings.db)
    assert code != 0
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    code, out, err = main_exit(
        capsys, "create-key", "--role", "customer", "--account", "nope", "--db", api_settings.db
    )
    assert code != 0
    assert "nope" in err
    assert len(err.strip().splitlines()) == 1, err


def test_bad_arguments_give_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = f"sqlite:///{tmp_path / 'x.db'}"
    cases = [
        ("create-key", "--role", "root", "--db", db),
        ("create-key", "--db", db),
        ("serve", "--http", "nonsense", "--db", db),
        ("serve", "--currency", "dollars", "--db", db),
        ("serve", "--db", "mysql://x"),
        ("serve", "--mqtt", "http://x", "--db", db),
        ("revoke-key", "12345", "--db", db),
        ("frobnicate",),
        (),
    ]
    for args in cases:
        code, out, err = main_exit(capsys, *args)
        assert code != 0, args
        assert out == ""
        assert len(err.strip().splitlines()) == 1, (args, err)
    # And once as a real process: no traceback, one line, non-zero.
    done = run("serve", "--http", "nohost")
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert "http" in done.stderr


def test_a_bad_ingest_batch_size_is_one_line(tmp_path: Path) -> None:
    env = {"SMSA_HUB_INGEST_BATCH_SIZE": "0", "SMSA_HUB_DB": f"sqlite:///{tmp_path / 'x.db'}"}
    done = run("serve", env=env)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert "ingest_batch_size" in done.stderr


def test_serve_create_key_revoke_key(tmp_path: Path) -> None:
    """smsa-hub serve migrates and serves; create-key prints only a key, which works until
    revoke-key; SIGTERM stops the server gracefully even with an event stream open."""
    db = f"sqlite:///{tmp_path / 'served.db'}"
    port = free_port()
    cmd = [str(EXE)] if EXE.exists() else [sys.executable, "-m", "hub"]
    env = {**os.environ, "SMSA_HUB_MQTT": "", "SMSA_HUB_HTTP": f"127.0.0.1:{port}"}
    proc = subprocess.Popen(
        [*cmd, "serve", "--db", db], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        wait_for(lambda: port_open(port) or proc.poll() is not None, timeout=30)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        done = run("create-key", "--role", "operator", "--db", db)
        assert done.returncode == 0, done.stderr
        assert re.fullmatch(r"smsa_[A-Za-z0-9_\-]{43}\n", done.stdout), repr(done.stdout)
        key = done.stdout.strip()
        h = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            assert http.get("/healthz").json()["ok"] is True
            assert http.get("/api/v1/meters", headers=h).json() == []
            r = http.post("/api/v1/accounts", json={"id": "x", "name": "x"}, headers=h)
            assert r.status_code == 403
            admin = run("create-key", "--role", "admin", "--db", db).stdout.strip()
            revoked = run("revoke-key", key, env={"SMSA_HUB_DB": db})
            assert revoked.returncode == 0, revoked.stderr
            assert http.get("/api/v1/meters", headers=h).status_code == 401
            h = {"Authorization": f"Bearer {admin}"}
            # An open event stream does not hold up the shutdown.
            with http.stream("GET", "/api/v1/events/stream", headers=h) as stream:
                assert stream.status_code == 200
                proc.send_signal(signal.SIGTERM)
                # uvicorn re-raises the signal after its graceful shutdown.
                assert proc.wait(timeout=15) in {0, -signal.SIGTERM}
        assert proc.stderr is not None
        assert "Application shutdown complete" in proc.stderr.read().decode()
    finally:
        stop(proc)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def test_provider_key_is_bound_to_its_provider(
    client: httpx.Client,
    keys: object,
    api_settings: HubSettings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``--role provider --provider ID``: a key for that provider's imports; none without an
    existing provider."""
    code, out, err = main_exit(capsys, "create-key", "--role", "provider", "--provider", "nope",
                               "--db", api_settings.db)  # fmt: skip
    assert code != 0 and out == "" and "provider:nope" in err
    code, out, err = main_exit(capsys, "create-key", "--role", "provider", "--db", api_settings.db)
    assert code != 0 and len(err.strip().splitlines()) == 1, err
    code, out, _ = main_exit(capsys, "create-key", "--role", "provider", "--provider", "gen",
                             "--db", api_settings.db)  # fmt: skip
    assert code == 0
    h = {"Authorization": f"Bearer {out.strip()}"}
    r = client.post("/api/v1/imports/readings", json={"rows": []}, headers=h)
    assert r.status_code == 200 and r.json()["accepted"] == 0
    assert client.get("/api/v1/meters/m1", headers=h).status_code == 403
