"""The gateway's credentials as the hub rotates them (issue 15, item 5): the command key
replaced stays honoured until the first command under the new one; the new ones survive a
restart; a gateway provisioned anew with another key starts over from its configuration."""

from pathlib import Path

import pytest

from agent.commands import CommandGate
from protocol.messages import Rotation
from protocol.signing import new_key
from tests.agent.test_commands import KEY, NOW, command, raw, rejected

NEW = new_key()


def test_the_old_key_holds_until_the_first_command_under_the_new_one(tmp_path: Path) -> None:
    gate = CommandGate(KEY, tmp_path / "agent.db", mqtt_password="configured-password")
    try:
        gate.rotate(Rotation(command_key=NEW, mqtt_password="n" * 32))
        assert gate.credentials.mqtt_password == "n" * 32
        gate.accept(raw(command(KEY, id="old-1", meter="m1")), NOW)  # in flight before the ack
        gate.accept(raw(command(NEW, id="new-1", meter="m2")), NOW)  # the hub switched
        assert rejected(gate, raw(command(KEY, id="old-2", meter="m3"))) == "bad signature"
        assert gate.credentials.honoured() == (NEW,)
    finally:
        gate.close()


@pytest.mark.parametrize("configured", [KEY, new_key()], ids=["same-key", "provisioned-anew"])
def test_rotated_credentials_survive_a_restart_unless_provisioned_anew(
    tmp_path: Path, configured: str
) -> None:
    gate = CommandGate(KEY, tmp_path / "agent.db", mqtt_password="configured-password")
    gate.rotate(Rotation(command_key=NEW, mqtt_password="n" * 32))
    gate.close()
    again = CommandGate(configured, tmp_path / "agent.db", mqtt_password="other-password")
    try:
        if configured == KEY:  # the configuration the rotation started from: the rotation wins
            assert again.credentials.honoured() == (NEW, KEY)
            assert again.credentials.mqtt_password == "n" * 32
            again.accept(raw(command(NEW)), NOW)
        else:  # an operator provisioned the gateway with another key: that one
            assert again.credentials.honoured() == (configured,)
            assert again.credentials.mqtt_password == "other-password"
            assert rejected(again, raw(command(NEW))) == "bad signature"
    finally:
        again.close()
