"""scripts/system-deps, the set-up step of `make test` and `make demo`.

The package manager is the one thing a test cannot let the script change on a shared machine, so
``dpkg-query``, ``apt-get``, ``service``, ``sudo`` and ``id`` are stand-ins on PATH that report a
chosen state and record what they were asked; the script itself runs unchanged. One test runs it
against the real dpkg database of this machine.
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "system-deps"

DPKG_QUERY = """#!/bin/sh
# dpkg-query -W -f=FORMAT PKG...: every package installed except those in $FAKE_MISSING.
shift 2
for p in "$@"; do
    case " $FAKE_MISSING " in
    *" $p "*) echo "un $p" ;;
    *) echo "ii $p" ;;
    esac
done
"""
RECORD = """#!/bin/sh
echo "$(basename "$0") $*" >> "$FAKE_LOG"
"""
ID = """#!/bin/sh
echo "$FAKE_UID"
"""
SUDO = """#!/bin/sh
# sudo -n CMD...: runs CMD when $FAKE_SUDO is "ok", else fails as sudo does without a password.
[ "$FAKE_SUDO" = ok ] || exit 1
echo "sudo $*" >> "$FAKE_LOG"
shift
[ "$1" = true ] && exit 0
exec "$@"
"""


def fake_bin(tmp_path: Path) -> Path:
    folder = tmp_path / "bin"
    folder.mkdir()
    scripts = {"dpkg-query": DPKG_QUERY, "apt-get": RECORD, "service": RECORD, "id": ID}
    scripts["sudo"] = SUDO
    for name, text in scripts.items():
        path = folder / name
        path.write_text(text)
        path.chmod(0o755)
    return folder


def run(
    tmp_path: Path, purpose: str, *, missing: str = "", uid: int = 0, sudo: str = "no"
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    log = tmp_path / "calls.log"
    log.write_text("")
    env = {
        "PATH": f"{fake_bin(tmp_path)}:/usr/bin:/bin",
        "PYTHON": sys.executable,
        "FAKE_MISSING": missing,
        "FAKE_UID": str(uid),
        "FAKE_SUDO": sudo,
        "FAKE_LOG": str(log),
    }
    done = subprocess.run(
        [str(SCRIPT), purpose], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    return done, log.read_text().splitlines()


def test_nothing_missing_does_nothing(tmp_path: Path) -> None:
    done, calls = run(tmp_path, "test")
    assert (done.returncode, done.stdout, done.stderr, calls) == (0, "", "", [])


def test_as_root_installs_only_what_is_missing_and_stops_the_packaged_services(
    tmp_path: Path,
) -> None:
    done, calls = run(tmp_path, "test", missing="mbpoll postgresql")
    assert done.returncode == 0, done.stderr
    assert "installing mbpoll postgresql" in done.stderr
    assert calls == [
        "apt-get update -qq",
        "apt-get install -y -qq --no-install-recommends mbpoll postgresql",
        "service postgresql stop",
    ]


def test_without_root_uses_sudo_when_it_needs_no_password(tmp_path: Path) -> None:
    done, calls = run(tmp_path, "test", missing="socat", uid=1000, sudo="ok")
    assert done.returncode == 0, done.stderr
    assert "sudo -n apt-get install -y -qq --no-install-recommends socat" in calls
    assert "apt-get install -y -qq --no-install-recommends socat" in calls


def test_without_root_or_sudo_prints_the_one_command_and_fails(tmp_path: Path) -> None:
    done, calls = run(tmp_path, "test", missing="mosquitto chromium", uid=1000)
    assert done.returncode == 1
    assert done.stdout == (
        "sudo apt-get update && sudo apt-get install -y --no-install-recommends "
        "mosquitto chromium\n"
    )
    assert "missing mosquitto chromium" in done.stderr
    assert calls == []


def test_the_demo_needs_no_broker_or_database_packages(tmp_path: Path) -> None:
    done, calls = run(tmp_path, "demo", missing="mosquitto postgresql socat chromium")
    assert (done.returncode, calls) == (0, [])


def test_an_unknown_purpose_is_a_usage_error(tmp_path: Path) -> None:
    done, _ = run(tmp_path, "deploy")
    assert done.returncode == 2
    assert done.stderr == "usage: scripts/system-deps [test|demo]\n"


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="not a Debian system")
def test_on_this_machine_it_is_quick_when_everything_is_there() -> None:
    """The suite runs here, so the packages are there: the check alone, well under a second."""
    env = {**os.environ, "PYTHON": sys.executable}
    started = time.monotonic()
    done = subprocess.run(
        [str(SCRIPT), "test"], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    elapsed = time.monotonic() - started
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert elapsed < 1.0, f"{elapsed:.2f} s"
