"""The schedule's top-ups, operator commands and tariff versions, sent through the hub's API.

A request the hub cannot answer (it is being killed, or restarting) is sent again, the same
request with the same idempotency key, until it is answered: what the hub must make safe.
"""

import logging
import time
from dataclasses import dataclass, field

import httpx

from demo.api import HubApi
from demo.procs import DemoError
from demo.story import TARIFF
from tests.soak.schedule import Action

log = logging.getLogger(__name__)
PROVIDERS = [str(c["provider"]) for c in TARIFF["components"]]  # type: ignore[index]


@dataclass
class Sent:
    topups: dict[str, tuple[str, int]] = field(default_factory=dict)  # key -> (account, cents)
    replays: int = 0
    commands: list[tuple[str, str, str]] = field(default_factory=list)  # (meter, action, id)
    tariffs: int = 0
    refused: list[str] = field(default_factory=list)


def run(api: HubApi, actions: list[Action], t0: float, deadline: float) -> Sent:
    sent = Sent()
    for action in actions:
        left = t0 + action.at - time.monotonic()
        if left > 0:
            time.sleep(left)
        try:
            _until_answered(api, action, sent, deadline)
        except (httpx.HTTPError, DemoError) as exc:
            sent.refused.append(f"{action.kind} at {action.at}s: {exc}")
    return sent


def _do(api: HubApi, action: Action, sent: Sent) -> None:
    args = action.args
    if action.kind in ("topup", "topup_replay"):
        account, amount, key = args["customer"], args["amount"], args["key"]
        body = {"amount": amount, "reference": key}
        api.post(f"/accounts/{account}/topups", body, **{"Idempotency-Key": key})
        sent.topups[key] = (account, _cents(amount))
        sent.replays += action.kind == "topup_replay"
    elif action.kind in ("disconnect", "reconnect"):
        out = api.post(f"/meters/{args['meter']}/{action.kind}", {"reason": "soak operator"})
        sent.commands.append((args["meter"], action.kind, str(out["command_id"])))
    else:
        components = [
            {"provider": provider, "per_kwh": rate}
            for provider, rate in zip(PROVIDERS, args["rates"], strict=True)
        ]
        api.post(
            f"/tariffs/{args['tariff']}/versions", {"currency": "USD", "components": components}
        )
        sent.tariffs += 1


def _until_answered(api: HubApi, action: Action, sent: Sent, deadline: float) -> None:
    while True:
        try:
            _do(api, action, sent)
            return
        except (httpx.HTTPError, DemoError) as exc:
            if isinstance(exc, DemoError) and " answered 5" not in str(exc):
                raise
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def _cents(amount: str) -> int:
    whole, _, frac = amount.partition(".")
    return int(whole) * 100 + int(frac.ljust(2, "0"))
