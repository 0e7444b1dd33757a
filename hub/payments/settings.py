"""Payment settings, each also ``SMSA_HUB_<NAME>`` in the environment (read where a request is
served, never at import time). The allocation policy is ``BillingSettings.allocation_policy``."""

from __future__ import annotations

from pydantic import field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from hub.payments.verify import Verifier, VerifierConfig, build


class PaymentSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SMSA_HUB_", extra="ignore")

    # third-party verifiers: {"billpay:<network>" | "callback:<provider>": {...}} (verify.py)
    payment_verifiers: dict[str, VerifierConfig] = {}

    @field_validator("payment_verifiers")
    @classmethod
    def _parse(cls, value: dict[str, VerifierConfig]) -> dict[str, VerifierConfig]:
        for name, config in value.items():
            if not name.startswith(("billpay:", "callback:")):
                raise ValueError(f"{name!r}: a verifier is for billpay:<id> or callback:<id>")
            if name.startswith("callback:") and config.kind != "url":
                raise ValueError(f"{name!r}: a callback is signed already; its verifier is a url")
            build(name, config)
        return value

    def verifier(self, name: str) -> Verifier | None:
        config = self.payment_verifiers.get(name)
        return build(name, config) if config is not None else None
