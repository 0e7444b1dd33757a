"""Paper routing (contract section 6, "Paper routing"; pure): which print site mails a paper
bill. A site serves a postal code through its zone with the longest matching prefix; its cost is
``per_piece + transport`` of that zone. The choice is the eligible site (it serves the code and
its ``daily_capacity`` for the day is not used up) with the lowest cost, ties to the lower
``co2_g``, then to the lower site id (so the choice never depends on the order of the sites).
Every candidate's score is returned with the choice: it is the reason recorded on the bill."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

K = TypeVar("K")


def normalize(postal_code: str) -> str:
    """A postal code or prefix as compared: upper case, without spaces and hyphens."""
    return "".join(c for c in postal_code.upper() if c not in " -")


@dataclass(frozen=True)
class Zone:
    prefix: str  # normalised
    transport: int  # minor units per piece
    co2_g: int


@dataclass(frozen=True)
class Site:
    id: str
    per_piece: int  # minor units
    daily_capacity: int
    zones: tuple[Zone, ...]


@dataclass(frozen=True)
class Score:
    """One candidate site for one postal code: the zone that serves it (None: none does), the
    cost and CO2 through that zone, and how much of the day's capacity was used."""

    site: str
    prefix: str | None
    per_piece: int
    transport: int | None
    co2_g: int | None
    used: int
    capacity: int

    @property
    def cost(self) -> int | None:
        return None if self.transport is None else self.per_piece + self.transport

    @property
    def serves(self) -> bool:
        return self.prefix is not None

    @property
    def eligible(self) -> bool:
        return self.serves and self.used < self.capacity

    @property
    def why(self) -> str:
        if not self.serves:
            return "no zone serves the postal code"
        if not self.eligible:
            return f"full: {self.used} of {self.capacity} used that day"
        return "eligible"

    def rank(self) -> tuple[int, int, str]:
        assert self.cost is not None and self.co2_g is not None
        return (self.cost, self.co2_g, self.site)


@dataclass(frozen=True)
class Route:
    postal_code: str
    choice: Score | None  # None: no site can take the bill
    scores: tuple[Score, ...]  # every site's, in site id order
    reason: str


def zone_for(site: Site, postal_code: str) -> Zone | None:
    """The site's zone with the longest prefix of the (normalised) postal code, or None."""
    code = normalize(postal_code)
    matching = [z for z in site.zones if code.startswith(z.prefix)]
    return max(matching, key=lambda z: len(z.prefix), default=None)


def score(site: Site, postal_code: str, used: int) -> Score:
    zone = zone_for(site, postal_code)
    return Score(site=site.id, prefix=None if zone is None else zone.prefix,
                 per_piece=site.per_piece, transport=None if zone is None else zone.transport,
                 co2_g=None if zone is None else zone.co2_g, used=used,
                 capacity=site.daily_capacity)  # fmt: skip


def _reason(choice: Score | None, scores: Sequence[Score]) -> str:
    eligible = sorted((s for s in scores if s.eligible), key=Score.rank)
    if choice is None:
        if not any(s.serves for s in scores):
            return "no print site serves this postal code"
        return "every print site serving this postal code is full for the day"
    text = f"lowest per_piece + transport ({choice.cost}) of {len(eligible)} eligible site(s)"
    tied = [s.site for s in eligible[1:] if s.cost == choice.cost]
    if any(s.cost == choice.cost and s.co2_g == choice.co2_g for s in eligible[1:]):
        return f"{text}; tied on cost and CO2 with {', '.join(tied)}: the lower site id"
    if tied:
        return f"{text}; tied on cost with {', '.join(tied)}: the lower CO2 ({choice.co2_g} g)"
    return text


def choose(sites: Iterable[Site], postal_code: str, used: Mapping[str, int]) -> Route:
    """Route one bill: every site scored, the best eligible one chosen (or None)."""
    scores = tuple(score(s, postal_code, used.get(s.id, 0))
                   for s in sorted(sites, key=lambda s: s.id))  # fmt: skip
    eligible = [s for s in scores if s.eligible]
    choice = min(eligible, key=Score.rank, default=None)
    return Route(postal_code, choice, scores, _reason(choice, scores))


def route_all(
    sites: Sequence[Site], bills: Iterable[tuple[K, str]], used: Mapping[str, int]
) -> list[tuple[K, Route]]:
    """Route ``bills`` (key, postal code) in order, each taking one piece of its site's day:
    ``used`` is what each site had already taken that day (not changed)."""
    taken = dict(used)
    out: list[tuple[K, Route]] = []
    for key, code in bills:
        route = choose(sites, code, taken)
        if route.choice is not None:
            taken[route.choice.site] = taken.get(route.choice.site, 0) + 1
        out.append((key, route))
    return out
