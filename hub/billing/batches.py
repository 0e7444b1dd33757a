"""A print site's batch for a day (``GET /print-sites/{id}/batches/{date}``): the paper bills
routed to it that day, in postal-code order, each rendered for a DL window envelope and joined
into one print-ready PDF in which every bill starts on an odd page."""

from __future__ import annotations

from datetime import date

from sqlalchemy.engine import Connection

from hub.billing.printsites import batch_bills, site_document
from hub.billing.render import batch_pdf
from hub.billing.views import bill_page
from hub.errors import NotFoundError


def batch(conn: Connection, site_id: str, day: date) -> bytes:
    """The batch PDF; NotFoundError for an unknown site or a day with no bills for it."""
    site_document(conn, site_id)
    bills = batch_bills(conn, site_id, day)
    if not bills:
        raise NotFoundError("print batch", f"{site_id}/{day.isoformat()}")
    return batch_pdf([bill_page(conn, bill_id, window=True) for bill_id in bills])
