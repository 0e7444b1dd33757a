"""The socat helper: two linked ptys, cleaned up on exit."""

import os

import pytest

from firmware_sim.pty import socat_pair

pytestmark = pytest.mark.serial


def test_pair_carries_bytes_both_ways_and_stops() -> None:
    with socat_pair() as pair:
        assert pair.server.startswith("/dev/") and pair.client.startswith("/dev/")
        assert pair.server != pair.client
        pid = pair.pid
        a = os.open(pair.server, os.O_RDWR | os.O_NOCTTY)
        b = os.open(pair.client, os.O_RDWR | os.O_NOCTTY)
        try:
            os.write(a, b"\x01\x03\x00\x00")
            got = b""
            while len(got) < 4:
                got += os.read(b, 16)
            assert got == b"\x01\x03\x00\x00"
        finally:
            os.close(a)
            os.close(b)
    assert pid is not None
    assert pair.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
