"""Paper remittance stubs as an OCR scanner writes them (pure): one scan line per line,
``YYYYNNNNNNCC AAAAAAAAAAAA K`` (``hub.billing.reference``). Each line is read alone and
either gives a :class:`Stub` or the reason it cannot be paid."""

from __future__ import annotations

import re
from dataclasses import dataclass

from stdnum import luhn

from hub.billing.reference import read_scan_line

_GROUPS = re.compile(r"^\s*(\S+)\s+(\S+)\s+(\S+)\s*$")


@dataclass(frozen=True)
class Stub:
    key: str  # the line's digits: the same stub twice has the same key
    year: int
    seq: int
    check_digits: str
    amount: int  # minor units


def read_stub(line: str) -> Stub:
    """The stub on ``line``; ValueError with the reason it is rejected."""
    found = _GROUPS.match(line)
    if found is None:
        raise ValueError("not a scan line (YYYYNNNNNNCC AAAAAAAAAAAA K)")
    head, amount, check = found.groups()
    if not re.fullmatch(r"\d{12}", head):
        raise ValueError("reference group does not parse (YYYYNNNNNNCC)")
    if not re.fullmatch(r"\d{12}", amount):
        raise ValueError("amount does not parse (12 digits, minor units)")
    if not re.fullmatch(r"\d", check):
        raise ValueError("check digit does not parse")
    if not luhn.is_valid(head + amount + check):
        raise ValueError("wrong check digit")
    scan = read_scan_line(f"{head} {amount} {check}")
    if scan.amount_due == 0:
        raise ValueError("amount is zero: nothing to pay")
    return Stub(head + amount + check, scan.year, scan.seq, scan.check_digits, scan.amount_due)
