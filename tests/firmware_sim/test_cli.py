"""Command line: bad arguments exit non-zero with one line on stderr; SIGTERM stops cleanly."""

import signal
import socket
import subprocess
import sys

import pytest

from firmware_sim.__main__ import main
from firmware_sim.process import SimProcessError, sim_process
from firmware_sim.pty import SocatPair
from tests.firmware_sim.conftest import StartSim
from tests.firmware_sim.helpers import CONTROL, rtu_client, tcp_client
from tests.support import free_port


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "firmware_sim", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=20,
    )


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["--tcp", "127.0.0.1:0", "--model", "nope"], "no such model"),
        (["--tcp", "127.0.0.1:0", "--meter", "0"], "unit 0"),
        (["--tcp", "127.0.0.1:0", "--meter", "300:10"], "unit 300"),
        (["--tcp", "127.0.0.1:0", "--meter", "x"], "not an integer"),
        (["--tcp", "127.0.0.1:0", "--meter", "1:-5"], "negative"),
        (["--tcp", "127.0.0.1:0", "--meter", "1", "--meter", "1"], "twice"),
        (["--tcp", "127.0.0.1:0", "--speed", "-1"], "negative"),
        (["--tcp", "127.0.0.1:0", "--speed", "fast"], "not a number"),
        (["--tcp", "127.0.0.1"], "HOST:PORT"),
        (["--tcp", "127.0.0.1:70000"], "port 70000"),
        (["--serial", "/dev/no-such-tty"], "no such device"),
        (["--serial", "/dev/null", "--parity", "X"], "--parity"),
        (["--tcp", "127.0.0.1:0", "--relay-unit", "9:1:99"], "no coil 99"),
        (["--tcp", "127.0.0.1:0", "--profile", "25=1"], "time of day"),
        (["--tcp", "127.0.0.1:0", "--bogus"], "unrecognized"),
        ([], "one of the arguments"),
    ],
)
def test_bad_arguments_exit_non_zero_with_one_line(
    args: list[str], expect: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == (1 if expect == "no such device" else 2)  # 1: could not start
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("smsa-meter-sim: error: ")
    assert expect in lines[0]
    assert out == ""


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["--tcp", "127.0.0.1:0", "--model", "nope"], "no such model"),
        (["--serial", "/dev/no-such-tty"], "no such device"),
    ],
)
def test_the_installed_command_reports_one_line(args: list[str], expect: str) -> None:
    result = _run(*args)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("smsa-meter-sim: error: ")
    assert expect in lines[0]
    assert result.stdout == ""


def test_port_in_use_exits_non_zero_with_one_line() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = _run("--tcp", f"127.0.0.1:{port}")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "in use" in lines[0]


def test_ready_line_and_clean_sigterm(sim_tcp: StartSim) -> None:
    sim = sim_tcp("--meter", "1:100", "--meter", "7:200")
    assert sim.ready == f"listening tcp 127.0.0.1:{sim.port} units 1,7"
    sim.proc.send_signal(signal.SIGTERM)
    assert sim.proc.wait(10) == 0


def test_port_zero_reports_the_bound_port() -> None:
    with sim_process("--tcp", "127.0.0.1:0", "--meter", "3", "--log-level", "ERROR") as sim:
        assert sim.host == "127.0.0.1" and sim.port > 0 and sim.units == [3]
        with socket.create_connection((sim.host, sim.port), timeout=2):
            pass
        assert sim.proc is not None
        sim.proc.send_signal(signal.SIGINT)
        assert sim.proc.wait(10) == 0
    assert sim.proc is None


def test_sim_process_reports_a_simulator_that_exits() -> None:
    with pytest.raises(SimProcessError, match="exited with 2"):
        sim_process("--tcp", "127.0.0.1:0", "--model", "nope").start()


@pytest.mark.serial
def test_settings_a_device_refuses_are_one_line(
    pty_pair: SocatPair, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--serial", pty_pair.server, "--parity", "E"]) == 1  # a pty takes no parity
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "cannot configure the device" in lines[0]


@pytest.mark.serial
def test_control_tcp_is_a_second_door_to_a_serial_bus(pty_pair: SocatPair) -> None:
    """``--control-tcp``: the devices on the serial line, steered over TCP at the same time."""
    port = free_port()
    with sim_process("--serial", pty_pair.server, "--control-tcp", f"127.0.0.1:{port}",
                     "--meter", "3:500"):  # fmt: skip
        side, line = tcp_client(port), rtu_client(pty_pair.client)
        try:
            assert not side.write_registers(CONTROL, [0, 2500], device_id=3).isError()
            words = line.read_holding_registers(CONTROL, count=2, device_id=3).registers
            assert words == [0, 2500]
        finally:
            side.close()
            line.close()


def test_control_tcp_needs_serial(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--tcp", "127.0.0.1:0", "--control-tcp", "127.0.0.1:0"]) == 2
    assert "--control-tcp: only with --serial" in capsys.readouterr().err
