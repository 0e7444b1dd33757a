"""A bill as HTML and PDF from one Jinja2 template (``templates/bill.html``) rendered with
WeasyPrint: a table per service with a line per provider tier, a 12-month usage chart (SVG made
here, on the server), and for a postpaid bill the payment reference, the scan line and a
payment QR code (segno); for printing, the address block of a DL window envelope (``Window``)
and a print batch of bills joined into one PDF (``batch_pdf``). Pure apart from reading the
template."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from html import escape
from typing import Any

import segno
from jinja2 import Environment, PackageLoader, select_autoescape

_env = Environment(loader=PackageLoader("hub.billing", "templates"),
                   autoescape=select_autoescape(["html"]))  # fmt: skip
CHART_W, CHART_H, BAR_GAP = 480, 140, 4
COLORS = ("#2b6cb0", "#2f855a", "#b7791f", "#9b2c2c")
ADDRESS_LINES = 6  # DIN 5008's address zone


def usage_chart(months: Sequence[str], usage: Mapping[str, Mapping[str, Decimal]]) -> str:
    """An SVG bar chart: per month, one bar per service (``usage[service][month]``, in the
    service's unit), each service scaled to its own maximum, with a legend."""
    services = sorted(usage)
    slot = CHART_W / max(1, len(months))
    width = max(2.0, (slot - BAR_GAP) / max(1, len(services)))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{CHART_W}" '
             f'height="{CHART_H + 40}" role="img" aria-label="usage, last 12 months">']  # fmt: skip
    for s, service in enumerate(services):
        top = max(usage[service].values(), default=Decimal(0)) or Decimal(1)
        color = COLORS[s % len(COLORS)]
        for m, month in enumerate(months):
            value = usage[service].get(month, Decimal(0))
            height = float(value / top) * CHART_H
            x = m * slot + s * width
            parts.append(f'<rect x="{x:.1f}" y="{CHART_H - height:.1f}" width="{width:.1f}" '
                         f'height="{height:.1f}" fill="{color}"><title>{escape(service)} '
                         f'{month}: {value}</title></rect>')  # fmt: skip
        parts.append(f'<rect x="{s * 120}" y="{CHART_H + 26}" width="10" height="10" '
                     f'fill="{color}"/><text x="{s * 120 + 14}" y="{CHART_H + 35}" '
                     f'font-size="10">{escape(service)}</text>')  # fmt: skip
    for m, month in enumerate(months):
        parts.append(f'<text x="{m * slot + 1:.1f}" y="{CHART_H + 14}" font-size="8">'
                     f"{month[2:]}</text>")  # fmt: skip
    parts.append("</svg>")
    return "".join(parts)


def payment_qr(bill: Mapping[str, Any]) -> str:
    """A data URI of the payment QR code: ``PAY|<reference>|<amount>|<currency>|<number>``."""
    payload = f"PAY|{bill['reference']}|{bill['amount_due']}|{bill['currency']}|{bill['number']}"
    return str(segno.make(payload, error="m").svg_data_uri(scale=4))


@dataclass(frozen=True)
class Window:
    """The address block of a printed bill, placed for a DL window envelope (``window.html``):
    DIN 5008 / DIN 676 form B, the address field 85 x 45 mm at 20 mm from the sheet's left edge
    and 45 mm from its top (a 5 mm return-address line, a 12.7 mm notes zone and a 27.3 mm
    address zone of at most 6 lines); the sheet folded at 105 and 210 mm shows it in the window
    of a DL envelope (DIN 680: 90 x 45 mm, 20 mm from the left, 15 mm from the bottom)."""

    sender: str
    notes: str
    lines: tuple[str, ...]  # at most ADDRESS_LINES

    @classmethod
    def of(cls, *, issuer: str, notes: str, name: str, address: str, postal_code: str,
           country: str) -> Window:  # fmt: skip
        parts = [p.strip() for p in address.replace("\n", ",").split(",") if p.strip()]
        room = ADDRESS_LINES - 3  # the name, the postal code and the country take one each
        if len(parts) > room:
            parts = [*parts[: room - 1], ", ".join(parts[room - 1 :])]
        return cls(issuer, notes, (name, *parts, postal_code, country))


def bill_html(bill: Mapping[str, Any], *, customer_name: str, address: str | None,
              chart: str, window: Window | None = None) -> str:  # fmt: skip
    services: dict[str, list[Any]] = {}
    for line in bill["lines"]:
        services.setdefault(line["service"], []).append(line)
    qr = payment_qr(bill) if bill.get("reference") else ""
    return _env.get_template("bill.html").render(
        bill=bill, services=sorted(services.items()), customer_name=customer_name,
        address=address, chart=chart, qr=qr, window=window)  # fmt: skip


def bill_pdf(html: str) -> bytes:
    from weasyprint import HTML  # noqa: PLC0415 (heavy: loaded when a PDF is first made)

    return bytes(HTML(string=html).write_pdf())


BLANK_PAGE = "<!doctype html><style>@page { size: A4; }</style><p></p>"


def batch_pdf(pages: Sequence[str]) -> bytes:
    """One PDF of several printed bills (HTML pages, at least one) for duplex printing: each
    bill starts on an odd page, a blank page following a bill with an odd page count. The
    rendered pages are joined with WeasyPrint's ``Document.copy``."""
    from weasyprint import HTML  # noqa: PLC0415 (heavy: loaded when a PDF is first made)

    documents = [HTML(string=page).render() for page in pages]
    blank = HTML(string=BLANK_PAGE).render().pages[0]
    joined = []
    for document in documents:
        joined.extend(document.pages)
        if len(document.pages) % 2:
            joined.append(blank)
    return bytes(documents[0].copy(joined).write_pdf())
