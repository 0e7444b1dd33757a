"""Announcing new bills (after the run's commit): each bill's ``bill_issued`` event (written in
the run's transaction, so it is on ``/events`` and its stream too) goes to the hub's
notification channels (the webhook), and, when the customer's profile asks for email
(``delivery`` ``email`` or ``both``) and gives an address, an email with a link to the bill and
the PDF attached goes out through SMTP (``SMSA_HUB_SMTP_URL``; without it email is off, said
once in the log)."""

from __future__ import annotations

import logging
import smtplib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from sqlalchemy import Engine

from hub.billing.profiles import delivery_of
from hub.billing.render import bill_pdf
from hub.billing.settings import BillingSettings
from hub.billing.views import bill_document, bill_page
from hub.db import read_tx

log = logging.getLogger(__name__)
SMTP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    sender: str
    user: str | None = None
    password: str | None = None
    starttls: bool = False


def parse_smtp_url(url: str) -> SmtpConfig:
    """``smtp://[user:password@]host[:port][?from=addr][&starttls=1]``; ValueError if not."""
    parts = urlsplit(url)
    if parts.scheme != "smtp" or not parts.hostname:
        raise ValueError("SMTP URL must be smtp://[user:password@]host[:port][?from=addr]")
    query = parse_qs(parts.query)
    sender = query.get("from", [f"billing@{parts.hostname}"])[0]
    return SmtpConfig(parts.hostname, parts.port or 25, sender,
                      unquote(parts.username) if parts.username else None,
                      unquote(parts.password) if parts.password else None,
                      query.get("starttls", ["0"])[0] == "1")  # fmt: skip


class Mailer:
    """Sends one message at a time through SMTP, or nothing when not configured."""

    def __init__(self, url: str) -> None:
        self.config = parse_smtp_url(url) if url else None
        if self.config is None:
            log.info("billing email is off: SMSA_HUB_SMTP_URL is not set")

    def send(self, to: str, subject: str, text: str, pdf: tuple[str, bytes] | None) -> bool:
        if self.config is None:
            return False
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = self.config.sender, to, subject
        message.set_content(text)
        if pdf is not None:
            message.add_attachment(pdf[1], maintype="application", subtype="pdf",
                                   filename=pdf[0])  # fmt: skip
        c = self.config
        try:
            with smtplib.SMTP(c.host, c.port, timeout=SMTP_TIMEOUT_S) as smtp:
                if c.starttls:
                    smtp.starttls()
                if c.user:
                    smtp.login(c.user, c.password or "")
                smtp.send_message(message)
        except (OSError, smtplib.SMTPException) as exc:
            log.warning("bill email to %s not sent: %s", to, exc)
            return False
        return True


@lru_cache(maxsize=8)
def mailer_for(url: str) -> Mailer:
    """One mailer per SMTP URL and process (so "email is off" is logged once)."""
    return Mailer(url)


def announce(
    engine: Engine,
    events: Sequence[dict[str, Any]],
    notify: Callable[[dict[str, Any]], None] | None,
    settings: BillingSettings,
) -> int:
    """Deliver each ``bill_issued`` event to ``notify`` and by email where asked; returns
    how many emails were sent."""
    mailer = mailer_for(settings.smtp_url)
    sent = 0
    for event in events:
        if notify is not None:
            notify(event)
        bill_id = int(event["data"]["bill"])
        with read_tx(engine) as conn:
            delivery, email = delivery_of(conn, event["data"]["customer"])
            if delivery not in ("email", "both") or not email or mailer.config is None:
                continue
            bill = bill_document(conn, bill_id)
            pdf = bill_pdf(bill_page(conn, bill_id))
        link = f"{settings.public_url.rstrip('/')}/api/v1/bills/{bill_id}/html"
        text = (f"Your bill {bill['number']} for {bill['period']} is ready: {link}\n"
                f"Charges: {bill['charges']} {bill['currency']}; "
                f"amount due: {bill['amount_due']} {bill['currency']}.\n")  # fmt: skip
        sent += mailer.send(email, f"Bill {bill['number']}", text, (f"{bill['number']}.pdf", pdf))
    return sent
