"""The hub's settings: one pydantic-settings class, every field also ``SMSA_HUB_<NAME>``.

Built once in ``hub.__main__`` (command-line flags override the environment) and passed down;
nothing reads the environment at import time.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Self

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from protocol.money import Currency, to_minor

DEFAULT_DB = "sqlite:///smsa-hub.db"
DEFAULT_MQTT = "mqtt://127.0.0.1:1883"
DEFAULT_HTTP = "127.0.0.1:8080"
DEFAULT_TOPUP_URL = "/api/v1/accounts/{account}/topups"
PROVIDER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")  # hub.models.ID_PATTERN


def split_hostport(value: str) -> tuple[str, int]:
    """``"127.0.0.1:8080"`` to ``("127.0.0.1", 8080)``; ValueError with a one-line reason."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


class HubSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SMSA_HUB_", extra="ignore")

    db: str = DEFAULT_DB
    # Empty string: no MQTT (the API still works; commands are recorded as pending).
    mqtt: str = DEFAULT_MQTT
    # CA bundle (PEM) that verifies an mqtts:// broker's certificate and host name; empty:
    # the system's CAs. A plain mqtt:// URL ignores it.
    mqtt_ca_file: str = ""
    http: str = DEFAULT_HTTP
    currency: Currency = "USD"
    # Largest single top-up, a decimal string in major units of ``currency``.
    max_topup: str = "10000.00"
    # Payment providers' shared secrets: JSON object {"provider": "secret"} in the environment.
    payment_secrets: dict[str, str] = Field(default_factory=dict)
    # Largest request body, bytes: a larger Content-Length is refused (413) before the body is
    # read, a chunked body when it passes this (hub.api.middleware); before authentication.
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=1024**3)
    # Failed authentications (wrong key, bad stream token, bad payment signature) a client
    # address may make at once; then one more every AUTH_FAILURE_REFILL_S, and 429 with
    # Retry-After meanwhile (hub.api.ratelimit). Correct keys are never limited.
    auth_failure_burst: int = Field(default=10, ge=1, le=1_000_000)
    auth_failure_refill_s: float = Field(default=6.0, gt=0, le=3600)
    # Accepted clock skew of a payment callback's X-Timestamp, seconds.
    payment_window_s: int = Field(default=300, ge=1, le=86_400)
    # How often the SSE stream polls the events table, seconds.
    sse_poll_s: float = Field(default=0.2, gt=0, le=10)
    # SSE comment sent when nothing happened for this long, so proxies keep the stream open.
    sse_keepalive_s: float = Field(default=15.0, gt=0, le=300)
    # Lifetime of a dashboard stream token (EventSource cannot send an Authorization header).
    stream_token_ttl_s: int = Field(default=300, ge=10, le=86_400)
    # Most MQTT messages settled in one transaction. A batch closes after ``INGEST_BATCH_WAIT_S``
    # too, so it only grows this large under load, where it amortises per-meter work.
    ingest_batch_size: int = Field(default=10_000, ge=1, le=100_000)
    # Settling processes; each owns the gateways whose id hashes to it.
    ingest_workers: int = Field(default=2, ge=1, le=32)
    # Settle as one member of this ingest group (PostgreSQL; any number of ``serve`` processes
    # share ``$share/GROUP/smsa/v1/gw/+/...``: hub/ingest/group.py). Empty: the only consumer.
    ingest_group: str = Field(default="", pattern=r"^[A-Za-z0-9_-]{0,64}$")
    # Seconds a signed command stays valid for the agent.
    command_ttl_s: int = Field(default=3600, ge=10, le=7 * 86_400)
    # After usage a meter is sent its credit state only when its agent cannot work the balance
    # out alone (hub.commands.baseline), or when the last state it was sent is this old.
    # 0: after every batch's usage, as before.
    credit_refresh_s: int = Field(default=21_600, ge=0, le=7 * 86_400)
    # Credit-control notifications (low credit, cut-off, alerts) are POSTed here, signed with
    # HMAC-SHA256 (hub.control.webhook); empty: log and events table only.
    webhook_url: str = ""
    webhook_secret: str = ""
    log_level: str = "INFO"
    # Run the background scheduler in ``serve`` (false in some tests).
    scheduler: Annotated[bool, NoDecode] = True
    # Whether a customer key may top up its own account (POST /accounts/{id}/topups). Off: a
    # customer's money comes in through a payment provider's signed callback or an admin;
    # nothing stands behind a customer's own top-up but the customer's word.
    customer_topups: Annotated[bool, NoDecode] = False
    # The top-up link in a customer's notifications (GET /accounts/{id}/notifications):
    # ``{account}`` and ``{amount}`` (decimal, major units) are filled in; by default the API's
    # own top-up path. A payment page's URL, for instance.
    topup_url: str = Field(default=DEFAULT_TOPUP_URL, min_length=1, max_length=2000)

    @field_validator("http")
    @classmethod
    def _http(cls, value: str) -> str:
        split_hostport(value)
        return value

    @field_validator("db")
    @classmethod
    def _db(cls, value: str) -> str:
        if not value.startswith(("sqlite", "postgresql")):
            raise ValueError("expected sqlite:///PATH or postgresql+psycopg://...")
        return value

    @field_validator("mqtt")
    @classmethod
    def _mqtt(cls, value: str) -> str:
        if value and not value.startswith(("mqtt://", "mqtts://")):
            raise ValueError("expected mqtt://HOST:PORT or mqtts://HOST:PORT")
        return value

    @field_validator("mqtt_ca_file")
    @classmethod
    def _mqtt_ca_file(cls, value: str) -> str:
        if value and not Path(value).is_file():
            raise ValueError(f"no such file: {value!r}")
        return value

    @field_validator("payment_secrets")
    @classmethod
    def _payment_providers(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:  # a provider id names its callback URL and its transactions' keys
            if not PROVIDER_ID.match(name):
                raise ValueError(f"payment provider {name!r}: letters, digits, '_', '.', '-'")
        return value

    @field_validator("topup_url")
    @classmethod
    def _topup_url(cls, value: str) -> str:
        try:
            value.format(account="a", amount="1.00")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"topup_url may use only {{account}} and {{amount}}: {exc}") from exc
        return value

    @field_validator("scheduler", "customer_topups", mode="before")
    @classmethod
    def _flag(cls, value: object) -> object:
        if isinstance(value, str):
            return value.strip().lower() not in {"0", "false", "no", "off", ""}
        return value

    @model_validator(mode="after")
    def _webhook(self) -> Self:
        if self.webhook_url and not self.webhook_url.startswith(("http://", "https://")):
            raise ValueError("webhook_url must be an http:// or https:// URL")
        if self.webhook_url and not self.webhook_secret:
            raise ValueError("webhook_url needs webhook_secret")
        return self

    @model_validator(mode="after")
    def _max_topup(self) -> Self:
        if to_minor(self.max_topup, self.currency) <= 0:
            raise ValueError("max_topup must be positive")
        return self

    @property
    def max_topup_minor(self) -> int:
        return to_minor(self.max_topup, self.currency)

    @property
    def http_host(self) -> str:
        return split_hostport(self.http)[0]

    @property
    def http_port(self) -> int:
        return split_hostport(self.http)[1]
