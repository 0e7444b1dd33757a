"""A coverage-guided fuzz target for the payload parsers both sides run (``protocol/``).

``one_input(data)`` gives the bytes to every parser of a message that crosses the broker: the
message models (usage, events, status, command, credit state) and the agent's receipt check
(``verify_receipt``, which also canonicalises and verifies a signature). Each must answer a
value or ``ProtocolError`` (a one-line reason); anything else is a bug.

Under atheris (optional; ``pip install atheris``), coverage-guided, from the command line:
``python -m tests.fuzz.atheris_payloads -atheris_runs=100000`` (libFuzzer flags pass through).
Without atheris, tests/fuzz/test_atheris_target.py runs the same target over the mutated
corpus of tests/fuzz/payloads.py, and runs atheris briefly when it is installed.
"""

from __future__ import annotations

import contextlib
import sys

from protocol.errors import ProtocolError
from protocol.messages import Command, CreditState, EventMessage, Status, UsageMessage, parse
from protocol.receipts import verify_receipt

KEY = "11" * 32
MODELS = (UsageMessage, EventMessage, Status, Command, CreditState)


def one_input(data: bytes) -> None:
    for model in MODELS:
        try:
            parse(data, model)
        except ProtocolError as exc:
            if not exc.reason or "\n" in exc.reason:
                raise AssertionError(f"{model.__name__}: reason {exc.reason!r}") from exc
    with contextlib.suppress(ProtocolError):
        verify_receipt(data, KEY, "gw-1")


def main(argv: list[str]) -> None:
    import atheris  # noqa: PLC0415 (optional: only this entry point needs it)

    atheris.instrument_all()  # the parsers above are imported already: instrument them now
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
