"""Bulk SQL for usage batches: id allocation, array inserts and key lookups per backend."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import JSON, Column, Table
from sqlalchemy.engine import Connection

from hub.models.types import UTCDateTime

CHUNK = 500  # (meter, seq) keys per lookup: 1,000 parameters on SQLite


def allocate_ids(conn: Connection, table: Table, n: int) -> list[int]:
    """``n`` fresh ids for ``table.id`` so a batch can be inserted without RETURNING. On SQLite
    the caller's ``BEGIN IMMEDIATE`` holds the write lock, so max(id) cannot move under us."""
    if conn.dialect.name == "postgresql":
        sql = "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)"
        return [int(i) for i in conn.exec_driver_sql(sql, (table.name, n)).scalars()]
    top = conn.exec_driver_sql(f"SELECT COALESCE(MAX(id), 0) FROM {table.name}").scalar_one()
    return list(range(int(top) + 1, int(top) + 1 + n))


def bulk_insert(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert many rows with one statement, bypassing per-row SQLAlchemy compilation: ``INSERT
    ... SELECT FROM unnest(arrays)`` on PostgreSQL (psycopg's executemany would pipeline one
    statement per row), the driver's executemany on SQLite. Values pass through each column's
    bind processor (UTC datetimes, JSON) exactly as an ORM insert would."""
    if not rows:
        return
    names = list(rows[0])
    columns = []
    for name in names:
        column = table.c[name]
        convert = _bind_processor(conn, column)
        values = [row[name] for row in rows]
        if convert is None:
            columns.append(values)
        elif isinstance(column.type, UTCDateTime):
            columns.append(_convert_instants(values, convert))
        else:
            columns.append([convert(v) for v in values])
    into = f"INSERT INTO {table.name} ({', '.join(names)}) "
    if conn.dialect.name == "postgresql":
        casts = [f"CAST(%s AS {table.c[n].type.compile(dialect=conn.dialect)}[])" for n in names]
        conn.exec_driver_sql(into + f"SELECT * FROM unnest({', '.join(casts)})", tuple(columns))
    else:
        marks = ", ".join("?" * len(names))
        conn.exec_driver_sql(into + f"VALUES ({marks})", list(zip(*columns, strict=True)))


def _bind_processor(conn: Connection, column: Column[Any]) -> Callable[[Any], Any] | None:
    if conn.dialect.name == "postgresql" and isinstance(column.type, JSON):
        return _json_text
    processor: Callable[[Any], Any] | None = column.type.dialect_impl(conn.dialect).bind_processor(
        conn.dialect
    )
    return processor


def _convert_instants(values: list[Any], convert: Callable[[Any], Any]) -> list[Any]:
    """``[convert(v) for v in values]`` for a UTC datetime column, converting each distinct
    instant once: a batch repeats a few values (interval bounds, the batch's creation time)
    thousands of times, and the conversion (to naive UTC, then the driver's format) depends
    only on the instant. Equal datetimes are the same instant except across a DST fold in one
    zone, so a value with ``fold=1`` (and None) is converted on its own."""
    seen: dict[Any, Any] = {}
    out = []
    for value in values:
        if value is None or value.fold:
            out.append(convert(value))
            continue
        converted = seen.get(value)
        if converted is None:
            converted = seen[value] = convert(value)
        out.append(converted)
    return out


def _json_text(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def find_posted(conn: Any, keys: list[tuple[str, int]]) -> set[tuple[str, int]]:
    """Which of the (meter, seq) keys are already in ``posted_usage``: a join against the keys
    as a relation, so both backends look each one up in the primary key index."""
    found: set[tuple[str, int]] = set()
    for i in range(0, len(keys), CHUNK):
        chunk = keys[i : i + CHUNK]
        if conn.dialect.name == "postgresql":
            sql = ("SELECT p.meter_id, p.seq FROM posted_usage p JOIN unnest(CAST(%s AS "
                   "VARCHAR[]), CAST(%s AS BIGINT[])) AS k(m, s) "
                   "ON p.meter_id = k.m AND p.seq = k.s")  # fmt: skip
            params: tuple[Any, ...] = ([m for m, _ in chunk], [q for _, q in chunk])
        else:
            values = ", ".join(["(?, ?)"] * len(chunk))
            sql = (f"WITH k(m, s) AS (VALUES {values}) SELECT p.meter_id, p.seq FROM k "
                   "JOIN posted_usage p ON p.meter_id = k.m AND p.seq = k.s")  # fmt: skip
            params = tuple(x for pair in chunk for x in pair)
        found.update((r[0], int(r[1])) for r in conn.exec_driver_sql(sql, params))
    return found
