"""Child process for the kill -9 test: adds records forever, has some confirmed by a signed
receipt, and reports.

Each line on stdout is written after the operation it names has returned (committed):
``added <seq> <row id>`` or ``acked <id> <id> …``.
"""

import sys
from pathlib import Path

from agent.uplink.outbox import Outbox
from tests.agent.uplink.helpers import confirm_rows, record


def main() -> None:
    outbox = Outbox(Path(sys.argv[1]), max_rows=1_000_000)
    seq = 0
    while True:
        seq += 1
        row_id = outbox.add_usage(record("m1", seq))
        print(f"added {seq} {row_id}", flush=True)
        if seq % 7 == 0:
            rows = outbox.next_batch(0, 3, 10**6)
            confirm_rows(outbox, rows)
            print("acked " + " ".join(str(r.id) for r in rows), flush=True)


if __name__ == "__main__":
    main()
