"""``python -m tests.soak --seed N --minutes M``: one soak run; prints the seed first, then the
summary; exit 0 with no violation, 1 otherwise."""

import argparse
import logging
import random
import sys
import tempfile
from pathlib import Path

from tests.soak.run import soak, write_json


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__)
    p.add_argument("--seed", type=int, default=None, help="default: a random one (printed)")
    p.add_argument("--minutes", type=float, default=2.0, help="length of the fault phase")
    p.add_argument("--gateways", type=int, default=4, help="13 meters each (3 on RS-485)")
    p.add_argument("--work", type=Path, default=None, help="keep logs and databases here")
    p.add_argument("--json", type=Path, default=None, help="also write the summary as JSON")
    p.add_argument("--log-level", default="WARNING")
    args = p.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    print(f"seed {seed}", flush=True)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("httpx", "pymodbus"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix=f"soak-{seed}-") as tmp:
        work = args.work or Path(tmp)
        summary = soak(seed, args.minutes, work, args.gateways)
        for line in summary.lines():
            print(line, flush=True)
        if args.json:
            write_json(summary, args.json)
        if summary.violations:
            print(f"reproduce: python -m tests.soak --seed {seed} --minutes {args.minutes}")
    return 1 if summary.violations else 0


if __name__ == "__main__":
    sys.exit(main())
