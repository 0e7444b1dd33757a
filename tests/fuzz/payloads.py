"""Fuzzed MQTT payloads: valid seeds of every topic kind, mutated.

:func:`mutate` applies one mutation drawn from a ``random.Random`` (byte flips, truncation,
insertion and deletion of bytes, a JSON value swapped for another type, a key dropped or
added, deep nesting, huge or non-finite numbers, NUL characters, invalid UTF-8), so a seed
makes the same payloads on every run; :func:`corpus` is ``n`` of them round-robin over the
seeds. :func:`mutated` is the same as a hypothesis strategy (it shrinks a failure to a small
mutation). Seeds and mutations are plain bytes: no component of the hub or agent is used to
make them.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)

JsonMutation = Callable[[random.Random, Any], Any]


def usage_seed(meter: str = "m1", seq: int = 1) -> dict[str, Any]:
    start = NOW + timedelta(minutes=15 * (seq - 1))
    record = {"meter": meter, "seq": seq, "start": start.isoformat(),
              "end": (start + timedelta(minutes=15)).isoformat(),
              "import_start": 1000 + seq, "import_end": 1100 + seq}  # fmt: skip
    return {"v": 1, "records": [record]}


def events_seed(meter: str = "m1") -> dict[str, Any]:
    event = {"id": "ev-1", "kind": "tamper", "at": NOW.isoformat(), "meter": meter,
             "reason": "cover opened"}  # fmt: skip
    return {"v": 1, "events": [event]}


def status_seed() -> dict[str, Any]:
    return {"v": 1, "state": "online", "at": NOW.isoformat()}


def command_seed(meter: str = "m1", action: str = "disconnect") -> dict[str, Any]:
    return {"v": 1, "id": "c" * 32, "meter": meter, "action": action,
            "issued_at": NOW.isoformat(), "expires_at": (NOW + timedelta(hours=1)).isoformat(),
            "reason": "fuzz", "params": {}}  # fmt: skip


def _any_json(rng: random.Random, depth: int = 0) -> Any:
    pick = rng.randrange(9 if depth < 3 else 6)
    if pick == 0:
        return None
    if pick == 1:
        return rng.choice([True, False])
    if pick == 2:
        return rng.choice([0, -1, 1, 2**31, -(2**63), 2**64, 10**30, rng.randint(-9999, 9999)])
    if pick == 3:
        return rng.choice([0.5, -0.0, 1e308, 1e-320, rng.random() * 1e6])
    if pick == 4:
        return rng.choice(["", "x" * rng.randint(1, 300), "2026-13-45T99:99:99", "m1",
                           "\u202e", "\ud7ff\ue000", "a\u0000b", "../../etc", "%s%n",
                           "\ud800", "m\udfff1"])  # fmt: skip
    if pick == 5:
        return rng.choice(["online", "usage", "disconnect", "NaN", "-1"])
    if pick == 6:
        return [_any_json(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice(["v", "id", "meter", "seq", "x", ""]): _any_json(rng, depth + 1)
            for _ in range(rng.randint(0, 3))}  # fmt: skip


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*prefix, index))


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replace(value[head], rest, new)}
    copy = list(value)
    copy[head] = _replace(copy[head], rest, new)
    return copy


def _swap_value(rng: random.Random, doc: Any) -> Any:
    path = rng.choice(list(_paths(doc)))
    return _replace(doc, path, _any_json(rng))


def _drop_key(rng: random.Random, doc: Any) -> Any:
    paths = [p for p in _paths(doc) if p and isinstance(p[-1], str)]
    if not paths:
        return _swap_value(rng, doc)
    path = rng.choice(paths)

    def drop(value: Any, rest: tuple[Any, ...]) -> Any:
        if len(rest) == 1:
            return {k: v for k, v in value.items() if k != rest[0]}
        if isinstance(value, dict):
            return {**value, rest[0]: drop(value[rest[0]], rest[1:])}
        copy = list(value)
        copy[rest[0]] = drop(copy[rest[0]], rest[1:])
        return copy

    return drop(doc, path)


def _add_key(rng: random.Random, doc: Any) -> Any:
    if isinstance(doc, dict):
        return {**doc, rng.choice(["extra", "v", "records", "__proto__"]): _any_json(rng)}
    return _swap_value(rng, doc)


JSON_MUTATIONS: Sequence[JsonMutation] = (_swap_value, _swap_value, _drop_key, _add_key)


def _byte_mutation(rng: random.Random, raw: bytes) -> bytes:
    if not raw:
        return bytes([rng.randrange(256)])
    at = rng.randrange(len(raw))
    pick = rng.randrange(8)
    if pick == 0:  # truncated
        return raw[:at]
    if pick == 1:  # one byte flipped
        return raw[:at] + bytes([raw[at] ^ (1 << rng.randrange(8))]) + raw[at + 1 :]
    if pick == 2:  # random bytes inserted
        return raw[:at] + rng.randbytes(rng.randint(1, 8)) + raw[at:]
    if pick == 3:  # a range deleted
        return raw[:at] + raw[at + rng.randint(1, 16) :]
    if pick == 4:  # a range repeated
        return raw[:at] + raw[at : at + 16] * rng.randint(2, 50) + raw[at:]
    if pick == 5:  # invalid UTF-8
        return raw[:at] + rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80"]) + raw[at:]
    if pick == 6:  # a NUL character in a string
        return raw.replace(b'"m1"', b'"m\\u00001"', 1) or raw + b"\\u0000"
    return rng.randbytes(rng.randint(0, 64))  # garbage


def _special(rng: random.Random) -> bytes:
    depth = rng.choice([50, 1000, 100_000])
    return rng.choice([
        b"", b"null", b"[]", b"{}", b"0", b'"text"', b"NaN", b"Infinity",
        b"[" * depth + b"]" * depth, b'{"a":' * depth + b"1" + b"}" * depth,
        b'{"v": 1, "records": [' + b'{"seq": 1e999},' * 3 + b"{}]}",
        b'{"v": 1, "records": [], "records": []}',  # a repeated key
        b'{"v": 1, "records": [{"seq": ' + b"9" * 5000 + b"}]}",
        b"\xef\xbb\xbf{}",  # a byte-order mark
        b'{"v": 1, "records": "' + b"A" * 300_000 + b'"}',  # beyond any payload limit
    ])  # fmt: skip


def mutate(rng: random.Random, seed: dict[str, Any]) -> bytes:
    """One mutated payload of ``seed`` (a JSON document)."""
    pick = rng.randrange(10)
    if pick < 5:
        doc = seed
        for _ in range(rng.randint(1, 3)):
            doc = rng.choice(JSON_MUTATIONS)(rng, doc)
        return json.dumps(doc, allow_nan=True).encode()
    if pick < 9:
        raw = json.dumps(seed).encode()
        for _ in range(rng.randint(1, 3)):
            raw = _byte_mutation(rng, raw)
        return raw
    return _special(rng)


def corpus(seed: int, n: int, seeds: Sequence[dict[str, Any]]) -> Iterator[tuple[int, bytes]]:
    """``n`` mutated payloads (index of the seed document, payload), reproducible from
    ``seed``."""
    rng = random.Random(seed)
    for i in range(n):
        which = i % len(seeds)
        yield which, mutate(rng, seeds[which])


def mutated(seed: dict[str, Any]) -> st.SearchStrategy[bytes]:
    """Hypothesis: mutations of ``seed`` (driven by a hypothesis-drawn random, so they shrink)."""
    return st.randoms(use_true_random=False).map(lambda rng: mutate(rng, seed))


def any_payload(seeds: Sequence[dict[str, Any]]) -> st.SearchStrategy[bytes]:
    """Hypothesis: raw bytes, any JSON document, or a mutation of one of ``seeds``."""
    json_docs = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                    max_size=4),
        max_leaves=20,
    )  # fmt: skip
    return st.one_of(
        st.binary(max_size=200),
        json_docs.map(lambda d: json.dumps(d).encode()),
        *(mutated(s) for s in seeds),
    )
