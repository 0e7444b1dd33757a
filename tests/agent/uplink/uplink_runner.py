"""Child process for the Last Will test: an uplink that runs until it is killed.

Prints ``connected`` once the uplink is connected to the broker.
"""

import sys
import threading
from pathlib import Path

from agent.uplink.client import Uplink
from agent.uplink.outbox import Outbox
from tests.support import wait_for


def main() -> None:
    db, url, gateway = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    uplink = Uplink(
        gateway, url, None, None, Outbox(db, 1000), on_command=lambda _: None, command_key="ab" * 32
    )
    uplink.start()
    wait_for(lambda: uplink.connected, timeout=30)
    print("connected", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
