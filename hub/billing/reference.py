"""Bill numbers, ISO 11649 creditor references and the OCR scan line (pure).

Check digits come from python-stdnum: ISO 7064 mod 97-10 for the RF reference (validated with
``stdnum.iso11649``) and Luhn for the scan line.

The scan line is three groups of digits, as an OCR-B line on a paper stub reads them:
``YYYYNNNNNNCC AAAAAAAAAAAA K``: the bill's year and sequence number (``NNNNNN``) followed by
the RF reference's two check digits (``CC``), the amount due in minor units (12 digits) and a
Luhn check digit over all the digits before it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from stdnum import iso11649, luhn
from stdnum.iso7064 import mod_97_10

SEQ_DIGITS = 6
AMOUNT_DIGITS = 12
_SCAN = re.compile(r"^(\d{4})(\d{6})(\d{2}) (\d{12}) (\d)$")


def bill_number(issuer: str, year: int, seq: int) -> str:
    """``SMSA-2026-000001``."""
    return f"{issuer}-{year:04d}-{seq:0{SEQ_DIGITS}d}"


def creditor_reference(issuer: str, year: int, seq: int) -> str:
    """The ISO 11649 (RF) creditor reference for the bill, in its compact form."""
    base = f"{issuer}{year:04d}{seq:0{SEQ_DIGITS}d}"
    reference = f"RF{mod_97_10.calc_check_digits(base + 'RF')}{base}"
    return str(iso11649.validate(reference))


def scan_line(reference: str, year: int, seq: int, amount_due: int) -> str:
    """The OCR scan line of a bill (see the module docstring)."""
    if not 0 <= amount_due < 10**AMOUNT_DIGITS:
        raise ValueError(f"amount due {amount_due} does not fit the scan line")
    head = f"{year:04d}{seq:0{SEQ_DIGITS}d}{reference[2:4]}"
    amount = f"{amount_due:0{AMOUNT_DIGITS}d}"
    return f"{head} {amount} {luhn.calc_check_digit(head + amount)}"


@dataclass(frozen=True)
class ScanLine:
    year: int
    seq: int
    check_digits: str
    amount_due: int


def read_scan_line(text: str) -> ScanLine:
    """A scan line read back; ValueError naming what is wrong (format or check digit)."""
    found = _SCAN.match(text.strip())
    if found is None:
        raise ValueError("not a scan line (YYYYNNNNNNCC AAAAAAAAAAAA K)")
    year, seq, cc, amount, check = found.groups()
    if not luhn.is_valid(year + seq + cc + amount + check):
        raise ValueError("wrong check digit")
    return ScanLine(int(year), int(seq), cc, int(amount))
