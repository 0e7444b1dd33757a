"""Bulk SQL for usage batches: id allocation, array inserts and key lookups per backend.

The statements a batch runs every time are SQL text rendered once per shape and run with the
driver's executemany or one array parameter, with values converted by each column's own bind
and result processors: building and compiling a Core ``select(...).where(col.in_(...))`` (with
its expanding IN list) or a Core executemany cost more CPU per batch than the queries did.
"""

from __future__ import annotations

import json
import json.encoder
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from itertools import chain
from typing import Any, Literal, cast

from sqlalchemy import JSON, Boolean, Column, DateTime, Table, any_, bindparam
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError

from hub.models.types import UTCDateTime

CHUNK = 500  # (meter, seq) keys per lookup: 1,000 parameters on SQLite
SQLITE_ROWS = 200  # rows per multi-row INSERT statement
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def allocate_ids(conn: Connection, table: Table, n: int) -> list[int]:
    """``n`` fresh ids for ``table.id`` so a batch can be inserted without RETURNING. On SQLite
    the caller's ``BEGIN IMMEDIATE`` holds the write lock, so max(id) cannot move under us.
    PostgreSQL: the sequence is looked up once per statement (a materialized CTE: inlined, it is
    looked up again for every id, 2.9 us an id against 0.56, ``docs/scaling.md`` 2.3)."""
    if conn.dialect.name == "postgresql":
        sql = ("WITH s AS MATERIALIZED (SELECT pg_get_serial_sequence(%s, 'id')::regclass AS seq) "
               "SELECT nextval(s.seq) FROM s, generate_series(1, %s)")  # fmt: skip
        return [int(i) for i in conn.exec_driver_sql(sql, (table.name, n)).scalars()]
    top = conn.exec_driver_sql(f"SELECT COALESCE(MAX(id), 0) FROM {table.name}").scalar_one()
    return list(range(int(top) + 1, int(top) + 1 + n))


def bulk_insert(
    conn: Connection, table: Table, rows: list[dict[str, Any]], on_conflict: str = ""
) -> None:
    """Insert many rows with one statement, bypassing per-row SQLAlchemy compilation: ``INSERT
    ... SELECT FROM unnest(arrays)`` on PostgreSQL (psycopg's executemany would pipeline one
    statement per row), the driver's executemany on SQLite. Values pass through each column's
    bind processor (UTC datetimes, JSON) exactly as an ORM insert would."""
    if rows:
        names = list(rows[0])
        insert_columns(conn, table, {n: [row[n] for row in rows] for n in names}, on_conflict)


def insert_columns(
    conn: Connection, table: Table, values: dict[str, list[Any]], on_conflict: str = ""
) -> None:
    """``bulk_insert`` of the rows whose values per column are ``values`` (equal lengths), for
    a caller that has the columns at hand rather than one dict per row."""
    names = list(values)
    if not names or not values[names[0]]:
        return
    columns = [bind_values(conn, table.c[name], values[name]) for name in names]
    into = f"INSERT INTO {table.name} ({', '.join(names)}) "
    if on_conflict:
        on_conflict = " " + on_conflict
    if conn.dialect.name == "postgresql":
        types = None if on_conflict else _copy_types(conn.dialect, table, tuple(names))
        if types is not None:
            _copy(conn, table, names, types, columns)
            return
        casts = [f"CAST(%b AS {table.c[n].type.compile(dialect=conn.dialect)}[])" for n in names]
        sql = into + f"SELECT * FROM unnest({', '.join(casts)})" + on_conflict
        conn.exec_driver_sql(sql, tuple(columns))
    else:
        _sqlite_values(conn, into, on_conflict, len(names), list(zip(*columns, strict=True)))


# The binary COPY type of each column type a batch inserts; a JSON column's values are its
# text already (``_json_text``), and json's binary form is its text.
_COPY_TYPES = {"BIGINT": "int8", "INTEGER": "int4", "SMALLINT": "int2", "BOOLEAN": "bool",
               "FLOAT": "float8", "DOUBLE PRECISION": "float8", "TEXT": "text", "JSON": "text",
               "TIMESTAMP WITHOUT TIME ZONE": "timestamp"}  # fmt: skip


@lru_cache(maxsize=64)
def _copy_types(dialect: Dialect, table: Table, names: tuple[str, ...]) -> list[str] | None:
    """The binary COPY types of ``table``'s columns ``names``; None when one has no entry in
    ``_COPY_TYPES`` (the insert then goes through arrays)."""
    types = []
    for name in names:
        compiled = table.c[name].type.compile(dialect=dialect)
        kind = "varchar" if compiled.startswith("VARCHAR") else _COPY_TYPES.get(compiled)
        if kind is None:
            return None
        types.append(kind)
    return types


def _copy(
    conn: Connection, table: Table, names: list[str], types: list[str], columns: list[list[Any]]
) -> None:
    """Insert the rows with ``COPY ... FROM STDIN (FORMAT BINARY)`` in the caller's transaction:
    about half the client CPU of binding arrays for ``unnest`` and a sixth less of the server's
    (``docs/scaling.md`` 2.1). Triggers and constraints run as for an insert. The driver's
    errors are raised as SQLAlchemy's (``IntegrityError``, ``OperationalError``...), as an
    insert's would be, so a deadlock is retried (``hub.db.is_retryable``)."""
    sql = f"COPY {table.name} ({', '.join(names)}) FROM STDIN (FORMAT BINARY)"
    dbapi = cast(Any, conn.connection.dbapi_connection)
    try:
        with dbapi.cursor() as cursor, cursor.copy(sql) as copy:
            copy.set_types(types)
            for row in zip(*columns, strict=True):
                copy.write_row(row)
    except conn.dialect.loaded_dbapi.Error as exc:
        raise DBAPIError.instance(sql, None, exc, conn.dialect.loaded_dbapi.Error,
                                  dialect=conn.dialect) from exc  # fmt: skip


def _sqlite_values(
    conn: Connection, into: str, suffix: str, width: int, rows: list[tuple[Any, ...]]
) -> None:
    """``into VALUES (row) suffix`` for every row, as an executemany of a statement that takes
    up to SQLITE_ROWS rows at once (fewer if SQLite allows fewer parameters): SQLite then does
    about a quarter less work per row than stepping a one-row statement per row (a journal
    entry: 7.5 -> 5.5 us; 50 rows at once: 6.1 us). Rows are inserted in order (the same ids,
    the same result)."""
    dbapi = cast(sqlite3.Connection, conn.connection.dbapi_connection)
    per = max(1, min(SQLITE_ROWS, dbapi.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width))
    full = len(rows) - len(rows) % per
    if full:
        sql = into + "VALUES " + ", ".join([f"({_marks(width)})"] * per) + suffix
        chunks = [tuple(chain.from_iterable(rows[i : i + per])) for i in range(0, full, per)]
        conn.exec_driver_sql(sql, chunks)
    if full < len(rows):
        conn.exec_driver_sql(into + f"VALUES ({_marks(width)})" + suffix, rows[full:])


def bind_values(conn: Connection, column: Column[Any], values: list[Any]) -> list[Any]:
    """``values`` as the driver should get them for ``column`` (its bind processor)."""
    convert = _bind_processor(conn, column)
    if convert is None:
        return values
    if isinstance(column.type, UTCDateTime):
        return _convert_instants(values, convert)
    return [convert(v) for v in values]


def execute_many(
    conn: Connection, sql: str, columns: Sequence[Column[Any] | None], rows: list[tuple[Any, ...]]
) -> None:
    """Run ``sql`` (``?`` marks) once per row with the driver's executemany; the value at
    position i goes through ``columns[i]``'s bind processor (None: passed as it is)."""
    if not rows:
        return
    values = [list(v) for v in zip(*rows, strict=True)]
    converted = [
        v if column is None else bind_values(conn, column, v)
        for column, v in zip(columns, values, strict=True)
    ]
    conn.exec_driver_sql(driver_sql(conn, sql), list(zip(*converted, strict=True)))


def driver_sql(conn: Connection, sql: str) -> str:
    """``sql`` written with ``?`` marks in the driver's paramstyle (psycopg: ``%s``)."""
    return sql.replace("?", "%s") if conn.dialect.name == "postgresql" else sql


def select_in(
    conn: Connection,
    table: Table,
    columns: Sequence[str],
    key: str,
    keys: Sequence[Any],
    *,
    order_by: str = "",
    lock: Literal["", "UPDATE", "SHARE"] = "",
) -> list[tuple[Any, ...]]:
    """Rows of ``SELECT columns FROM table WHERE key IN keys [ORDER BY order_by]``, each value
    through its column's result processor (as a Core select returns them). PostgreSQL: one
    statement with the keys as an array (``= ANY``, sent in binary like every array here:
    psycopg quotes and escapes each element of a text array), the rows locked ``FOR {lock}``
    with ``lock`` (``UPDATE``, ``SHARE``); SQLite: chunks of CHUNK keys (its write lock is held
    from ``BEGIN IMMEDIATE``)."""
    if not keys:
        return []
    processors = _result_processors(conn.dialect, table, tuple(columns))
    convert = [
        (i, _memo_result(f, table.c[columns[i]].type))
        for i, f in enumerate(processors)
        if f is not None
    ]
    pg = conn.dialect.name == "postgresql"
    step = len(keys) if pg else CHUNK
    head = f"SELECT {', '.join(columns)} FROM {table.name} WHERE {key}"
    tail = (f" ORDER BY {order_by}" if order_by else "") + (f" FOR {lock}" if lock and pg else "")
    out: list[tuple[Any, ...]] = []
    for i in range(0, len(keys), step):
        part = list(keys[i : i + step])
        if pg:
            rows = conn.exec_driver_sql(f"{head} = ANY(%b){tail}", (part,)).all()
        else:
            rows = conn.exec_driver_sql(f"{head} IN ({_marks(len(part))}){tail}", tuple(part)).all()
        if convert:
            out.extend(_convert_row(convert, row) for row in rows)
        else:
            out.extend(tuple(row) for row in rows)
    return out


@lru_cache(maxsize=64)
def _marks(n: int) -> str:
    return ", ".join("?" * n)


def _convert_row(convert: Sequence[tuple[int, Callable[[Any], Any]]], row: Any) -> tuple[Any, ...]:
    """``row`` with the value at each position i of ``convert`` through its function."""
    values = list(row)
    for i, f in convert:
        values[i] = f(values[i])
    return tuple(values)


def _memo_result(convert: Callable[[Any], Any], sql_type: Any) -> Callable[[Any], Any]:
    """``convert`` for one query's values of a column: a stored value converts to an immutable
    datetime or bool once per query (many meters share a last-seen time), JSON ``null`` (a meter
    without a split rule) to None without the JSON parser; other JSON parses each time, as each
    row must get its own mutable dict."""
    if isinstance(sql_type, JSON):
        json_convert = convert
        return lambda value: None if value == "null" else json_convert(value)
    if isinstance(sql_type, (DateTime, UTCDateTime, Boolean)):
        seen: dict[Any, Any] = {}

        def once(value: Any) -> Any:
            if value not in seen:
                seen[value] = convert(value)
            return seen[value]

        return once
    return convert


@lru_cache(maxsize=256)
def _result_processors(
    dialect: Dialect, table: Table, columns: tuple[str, ...]
) -> tuple[Callable[[Any], Any] | None, ...]:
    return tuple(
        table.c[name].type.dialect_impl(dialect).result_processor(dialect, None) for name in columns
    )


def _bind_processor(conn: Connection, column: Column[Any]) -> Callable[[Any], Any] | None:
    if conn.dialect.name == "postgresql" and isinstance(column.type, JSON):
        return _json_text
    processor: Callable[[Any], Any] | None = column.type.dialect_impl(conn.dialect).bind_processor(
        conn.dialect
    )
    if processor is not None and isinstance(column.type, JSON):
        # SQLite: SQLAlchemy's processor is ``json.dumps`` (the engine sets no serializer)
        # with its handling of None; a dict, the usual value, is encoded as it would be.
        plain = processor
        return lambda value: json_dumps(value) if type(value) is dict else plain(value)
    return processor


def _convert_instants(values: list[Any], convert: Callable[[Any], Any]) -> list[Any]:
    """``[convert(v) for v in values]`` for a UTC datetime column, converting each distinct
    instant once: a batch repeats a few values (interval bounds, the batch's creation time)
    thousands of times, and the conversion (to naive UTC, then the driver's format) depends
    only on the instant. The instant is looked up as its distance from the epoch: comparing
    two aware datetimes of different tzinfo objects (as parsed messages have) asks both for
    their offset, which costs more than one subtraction. None, naive values and values with
    ``fold=1`` (which the conversion may keep) are converted on their own."""
    seen: dict[timedelta, Any] = {}
    out = []
    for value in values:
        if value is None or value.tzinfo is None or value.fold:
            out.append(convert(value))
            continue
        instant = value - _EPOCH
        converted = seen.get(instant)
        if converted is None:
            converted = seen[instant] = convert(value)
        out.append(converted)
    return out


def _json_text(value: Any) -> str | None:
    return None if value is None else json_dumps(value)


# What ``json.dumps`` builds on every call with its default arguments (ASCII output, ", " and
# ": " separators, NaN allowed, keys unsorted), less the circular-reference check.
_ENCODE = json.encoder.c_make_encoder(  # type: ignore[attr-defined]
    None, json.JSONEncoder().default, json.encoder.encode_basestring_ascii, None, ": ", ", ",
    False, False, True,
)  # fmt: skip


def json_dumps(value: Any) -> str:
    """``json.dumps(value)``, through one C encoder made once instead of one per call (which
    costs more than encoding a usage entry's metadata). A value it cannot encode, a circular
    one included, goes through ``json.dumps`` for the usual error."""
    try:
        return "".join(_ENCODE(value, 0))
    except (TypeError, ValueError, RecursionError):
        return json.dumps(value)


def find_posted(conn: Any, keys: list[tuple[str, int]]) -> set[tuple[str, int]]:
    """Which of the (meter, seq) keys are already in ``posted_usage``: a join against the keys
    as a relation, so both backends look each one up in the primary key index."""
    found: set[tuple[str, int]] = set()
    for i in range(0, len(keys), CHUNK):
        chunk = keys[i : i + CHUNK]
        if conn.dialect.name == "postgresql":
            sql = ("SELECT p.meter_id, p.seq FROM posted_usage p JOIN unnest(CAST(%b AS "
                   "VARCHAR[]), CAST(%b AS BIGINT[])) AS k(m, s) "
                   "ON p.meter_id = k.m AND p.seq = k.s")  # fmt: skip
            params: tuple[Any, ...] = ([m for m, _ in chunk], [q for _, q in chunk])
        else:
            values = ", ".join(["(?, ?)"] * len(chunk))
            sql = (f"WITH k(m, s) AS (VALUES {values}) SELECT p.meter_id, p.seq FROM k "
                   "JOIN posted_usage p ON p.meter_id = k.m AND p.seq = k.s")  # fmt: skip
            params = tuple(x for pair in chunk for x in pair)
        found.update((r[0], int(r[1])) for r in conn.exec_driver_sql(sql, params))
    return found


def any_of(conn: Connection, column: Any, keys: Iterable[Any]) -> Any:
    """``column IN keys`` for a Core select. PostgreSQL: ``column = ANY(array)``, one bound
    parameter, so the statement is compiled once (SQLAlchemy's cache) and prepared once
    (psycopg) whatever the number of keys; an expanding IN renders one parameter per key at
    every execution and hands the driver a new statement text for each number of keys."""
    if conn.dialect.name == "postgresql":
        return column == any_(bindparam(None, list(keys), type_=_array_of(column.type)))
    return column.in_(list(keys))


@lru_cache(maxsize=256)
def _array_of(sql_type: Any) -> ARRAY[Any]:
    return ARRAY(sql_type)
