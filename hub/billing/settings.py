"""Billing settings, each also ``SMSA_HUB_<NAME>`` in the environment (read where the hub is
composed, never at import time)."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from hub.payments.policy import Policy, policy


class BillingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SMSA_HUB_", extra="ignore")

    # the hub's time zone: a bill's period is a calendar month in it
    timezone: str = "UTC"
    # the bill issuer's code: bill numbers ``ISSUER-YYYY-NNNNNN`` and the RF reference
    bill_issuer: str = Field(default="SMSA", pattern=r"^[A-Z]{2,8}$")
    # days from issue to the due date of a postpaid bill
    bill_due_days: int = Field(default=14, ge=0, le=365)
    # SMTP for e-bills (smtp://[user:password@]host:port[?from=addr][&starttls=1]); empty: off
    smtp_url: str = ""
    # the hub's public address, for the link in a bill's email
    public_url: str = "http://127.0.0.1:8080"
    # the version of the policy that allocates payments to the tiers (hub.payments.policy)
    allocation_policy: str = "1"

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        ZoneInfo(value)  # raises for an unknown zone
        return value

    @field_validator("allocation_policy")
    @classmethod
    def _policy(cls, value: str) -> str:
        policy(value)  # raises for an unknown version
        return value

    @property
    def rules(self) -> Policy:
        return policy(self.allocation_policy)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)
