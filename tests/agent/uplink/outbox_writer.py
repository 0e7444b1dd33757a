"""Child process for the kill -9 test: adds records forever, acknowledging some, and reports.

Each line on stdout is written after the operation it names has returned (committed):
``added <seq> <row id>`` or ``acked <id> <id> …``.
"""

import sys
from pathlib import Path

from agent.uplink.outbox import Outbox
from tests.agent.uplink.helpers import record


def main() -> None:
    outbox = Outbox(Path(sys.argv[1]), max_rows=1_000_000)
    seq = 0
    while True:
        seq += 1
        row_id = outbox.add_usage(record("m1", seq))
        print(f"added {seq} {row_id}", flush=True)
        if seq % 7 == 0:
            ids = [r.id for r in outbox.pending(3)]
            outbox.ack(ids)
            print("acked " + " ".join(map(str, ids)), flush=True)


if __name__ == "__main__":
    main()
