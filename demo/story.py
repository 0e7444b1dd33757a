"""The demo's cast and the story it must show, as data plus a checker over hub events."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

PROVIDERS = [
    {"id": "sunrise-solar", "name": "Sunrise Solar (generation)", "tier": "generation"},
    {"id": "gridco", "name": "GridCo Transmission", "tier": "transmission"},
    {"id": "citylines", "name": "CityLines Distribution", "tier": "distribution"},
    {"id": "brightretail", "name": "Bright Retail", "tier": "retail"},
    {"id": "smsa", "name": "SMSA platform", "tier": "platform"},
]

TARIFF = {
    "id": "residential",
    "name": "Residential prepaid",
    "currency": "USD",
    "components": [
        {"provider": "sunrise-solar", "per_kwh": "0.1200"},
        {"provider": "gridco", "per_kwh": "0.0300"},
        {"provider": "citylines", "per_kwh": "0.0600"},
        {"provider": "brightretail", "per_kwh": "0.0300"},
        {"provider": "smsa", "per_kwh": "0.0100"},
    ],
}


@dataclass(frozen=True)
class Member:
    """One customer of the story with the meter the agent reads for them."""

    customer: str
    name: str
    meter: str
    unit: int
    load_w: int
    topup: str
    role: str
    protected: bool = False
    alternate: str | None = None
    rules: dict[str, Any] = field(default_factory=dict)


CAST = [
    Member(
        "alice",
        "Alice Achieng",
        "m-alice",
        1,
        700,
        "6.00",
        "gets a low-credit prompt",
        rules={"low_credit": [500], "reconnect_above": 100},
    ),
    Member(
        "bob",
        "Bob Baraka",
        "m-bob",
        2,
        3000,
        "1.50",
        "is cut off, then reconnected by a top-up",
        rules={"low_credit": [100], "reconnect_above": 100},
    ),
    Member(
        "carol",
        "Carol Chebet",
        "m-carol",
        3,
        1500,
        "0.80",
        "is carried by her alternate account",
        alternate="carol-sponsor",
        rules={"reconnect_above": 100, "alternate_draw": 500},
    ),
    Member(
        "dave",
        "Dave Duma (medical equipment)",
        "m-dave",
        4,
        2000,
        "0.60",
        "is protected: never cut off, the operator is alerted",
        protected=True,
        rules={"reconnect_above": 100},
    ),
]
SERIAL_MEMBER = Member(
    "erin", "Erin Ekiru", "m-erin", 5, 400, "20.00", "is read over RS-485 (a socat pty pair)"
)
SPONSOR = {
    "id": "carol-sponsor",
    "name": "Carol's employer (alternate account)",
    "kind": "alternate",
}
SPONSOR_TOPUP = "30.00"
BOB_SECOND_TOPUP = "20.00"


@dataclass
class Story:
    """Which milestones the hub's event feed has shown so far."""

    serial: bool
    topped_up_bob: bool = False
    # GET /accounts/bob/notifications with bob's own key, read when he was cut off
    bob_notices: dict[str, Any] | None = None
    seen: set[tuple[str, str]] = field(default_factory=set)

    def observe(self, events: Sequence[dict[str, Any]], meters: Sequence[dict[str, Any]]) -> None:
        self.seen |= {(str(e.get("kind")), str(e.get("meter") or "")) for e in events}
        self.seen |= {("usage", str(m["id"])) for m in meters if m.get("last_seq")}

    def has(self, kind: str, meter: str) -> bool:
        return (kind, meter) in self.seen

    def bob_cut(self) -> bool:
        return self.has("disconnect", "m-bob")

    def milestones(self) -> list[tuple[str, bool]]:
        rows = [
            ("alice gets a low-credit prompt", self.has("low_credit", "m-alice")),
            ("bob is cut off when his credit runs out", self.bob_cut()),
            (
                "bob is reconnected by a top-up",
                self.topped_up_bob and self.has("reconnect", "m-bob"),
            ),
            ("carol's alternate account is drawn", self.has("alternate_draw", "m-carol")),
            ("carol is never cut off", not self.has("disconnect", "m-carol")),
            ("dave (protected) raises an operator alert", self.has("operator_alert", "m-dave")),
            ("dave is never cut off", not self.has("disconnect", "m-dave")),
        ]
        if self.serial:
            rows.append(("erin's meter reports over RS-485", self.has("usage", "m-erin")))
        return rows

    def done(self) -> bool:
        return all(ok for _, ok in self.milestones())
