"""``smsa-hub mosquitto-config --out DIR [--db URL] [--mqtt URL]`` (CONTRACT.md section 1): the
three files, the hub's own user from --mqtt, refusals in one line. That Mosquitto runs on the
files and enforces them: tests/hardware/test_deploy_files.py and tests/hub/test_broker_sessions.py.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from hub.__main__ import main
from hub.db import run_tx
from hub.gateways import mosquitto_hash, verify_password
from hub.models import Gateway


def add_gateways(engine: Engine, *users: str, digest: str | None = None) -> None:
    def work(session: Session) -> None:
        for user in users:
            session.add(
                Gateway(
                    id=user,
                    command_key="00" * 32,
                    mqtt_username=user,
                    mqtt_password_hash=digest or mosquitto_hash(f"pw-{user}"),
                )
            )

    run_tx(engine, work)


def db_url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def passwd_lines(path: Path) -> dict[str, str]:
    return dict(line.split(":", 1) for line in path.read_text().splitlines())


def test_writes_passwd_acl_and_conf_with_the_hubs_own_user(
    sqlite_engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    add_gateways(sqlite_engine, "gw-1", "gw-2")
    out = tmp_path / "broker"
    code, stdout, err = run(
        capsys, "mosquitto-config", "--out", str(out), "--db", db_url(sqlite_engine),
        "--mqtt", "mqtt://hub-main:s%40cret@127.0.0.1:11883",
    )  # fmt: skip
    assert (code, stdout, err) == (0, "", "")
    assert sorted(p.name for p in out.iterdir()) == ["acl", "mosquitto.conf", "passwd"]
    users = passwd_lines(out / "passwd")
    assert list(users) == ["hub-main", "gw-1", "gw-2"]
    assert verify_password("s@cret", users["hub-main"])  # the URL's password, percent-decoded
    assert verify_password("pw-gw-1", users["gw-1"])
    assert stat.S_IMODE((out / "passwd").stat().st_mode) == 0o600
    acl = (out / "acl").read_text()
    assert "\nuser hub-main\n" in acl and "\nuser smsa-hub" not in acl
    assert "pattern read smsa/v1/gw/%u/receipt\n" in acl
    conf = (out / "mosquitto.conf").read_text()
    assert f"password_file {out.resolve()}/passwd\n" in conf
    assert f"acl_file {out.resolve()}/acl\n" in conf
    assert "\nlistener 11883 127.0.0.1\nuse_username_as_clientid true\n" in conf
    assert "allow_anonymous false\n" in conf and "persistence true\n" in conf


def test_environment_gives_db_and_mqtt_and_a_rerun_replaces_the_files(
    sqlite_engine: Engine,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SMSA_HUB_DB", db_url(sqlite_engine))
    monkeypatch.setenv("SMSA_HUB_MQTT", "mqtts://smsa-hub:pw@broker.example:8883")
    out = tmp_path / "broker"
    assert run(capsys, "mosquitto-config", "--out", str(out))[0] == 0
    assert list(passwd_lines(out / "passwd")) == ["smsa-hub"]
    conf = (out / "mosquitto.conf").read_text()
    assert "\nlistener 8883\nuse_username_as_clientid true\ncafile " in conf  # TLS, all interfaces
    add_gateways(sqlite_engine, "gw-9")
    assert run(capsys, "mosquitto-config", "--out", str(out))[0] == 0
    assert list(passwd_lines(out / "passwd")) == ["smsa-hub", "gw-9"]
    assert sorted(p.name for p in out.iterdir()) == ["acl", "mosquitto.conf", "passwd"]


def test_tls_listener_and_installed_paths(
    sqlite_engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(
        capsys, "mosquitto-config", "--out", str(tmp_path), "--db", db_url(sqlite_engine),
        "--mqtt", "mqtt://smsa-hub:pw@127.0.0.1:1883", "--tls-port", "8883",
        "--certs", "/srv/certs", "--conf-dir", "/etc/mosquitto/smsa",
    )  # fmt: skip
    assert code == 0, err
    conf = (tmp_path / "mosquitto.conf").read_text()
    assert "password_file /etc/mosquitto/smsa/passwd\n" in conf
    assert "\nlistener 8883\nuse_username_as_clientid true\ncafile /srv/certs/ca.crt\n" in conf


def test_a_gateway_with_the_hubs_user_name_is_refused(
    sqlite_engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Created before ids were checked: the broker would take it for the hub."""
    add_gateways(sqlite_engine, "gw-1", "hub-main")
    out = tmp_path / "broker"
    code, stdout, err = run(
        capsys, "mosquitto-config", "--out", str(out), "--db", db_url(sqlite_engine),
        "--mqtt", "mqtt://hub-main:pw@127.0.0.1:1883",
    )  # fmt: skip
    assert code == 1 and stdout == ""
    assert len(err.strip().splitlines()) == 1 and "'hub-main'" in err, err
    assert not out.exists() or not any(out.iterdir())


def test_a_gateway_without_a_password_hash_is_left_out_with_a_warning(
    sqlite_engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    add_gateways(sqlite_engine, "gw-1")
    add_gateways(sqlite_engine, "gw-x", digest="-")
    code, _, err = run(
        capsys, "mosquitto-config", "--out", str(tmp_path), "--db", db_url(sqlite_engine),
        "--mqtt", "mqtt://smsa-hub:pw@127.0.0.1:1883",
    )  # fmt: skip
    assert code == 0
    assert list(passwd_lines(tmp_path / "passwd")) == ["smsa-hub", "gw-1"]
    assert len(err.strip().splitlines()) == 1 and "gw-x" in err, err


@pytest.mark.parametrize(
    ("args", "named"),
    [
        ((), "--out"),
        (("--out", "{tmp}", "--mqtt", "mqtt://127.0.0.1:1883"), "--mqtt"),
        (("--out", "{tmp}", "--mqtt", "mqtt://hub:@127.0.0.1:1883"), "--mqtt"),
        (("--out", "{tmp}", "--mqtt", "http://hub:pw@127.0.0.1"), "mqtt"),
        (("--out", "{tmp}", "--mqtt", "mqtt://a%2Fb:pw@127.0.0.1:1883"), "--mqtt"),
        (("--out", "{tmp}", "--mqtt", "mqtt://hub:pw@127.0.0.1:1883", "--tls-port", "0"),
         "--tls-port"),
        (("--out", "{tmp}", "--mqtt", "mqtt://hub:pw@127.0.0.1:1883", "--conf-dir", "etc"),
         "--conf-dir"),
    ],
    ids=["no-out", "no-user", "no-password", "not-mqtt", "slash-in-user", "bad-port",
         "relative-conf-dir"],
)  # fmt: skip
def test_bad_arguments_give_one_line_and_write_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], named: str
) -> None:
    out = tmp_path / "broker"
    db = f"sqlite:///{tmp_path / 'hub.db'}"
    filled = [arg.replace("{tmp}", str(out)) for arg in args]
    code, stdout, err = run(capsys, "mosquitto-config", "--db", db, *filled)
    assert code == 2 and stdout == ""
    assert len(err.strip().splitlines()) == 1 and named in err, err
    assert not out.exists()


def test_out_that_is_a_file_is_one_line(
    sqlite_engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "taken").write_text("")
    code, _, err = run(
        capsys, "mosquitto-config", "--out", str(tmp_path / "taken"),
        "--db", db_url(sqlite_engine), "--mqtt", "mqtt://smsa-hub:pw@127.0.0.1:1883",
    )  # fmt: skip
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and "--out" in err, err


def test_mqtt_passwd_still_prints_the_gateway_lines(
    sqlite_engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    add_gateways(sqlite_engine, "gw-1")
    code, stdout, _ = run(capsys, "mqtt-passwd", "--db", db_url(sqlite_engine))
    assert code == 0
    (line,) = stdout.splitlines()
    user, digest = line.split(":", 1)
    assert user == "gw-1" and verify_password("pw-gw-1", digest)
