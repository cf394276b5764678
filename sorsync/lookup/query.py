"""A lookup written once, whatever runs it: a `Query` is its SQL, its parameters and the plain
function that shapes the fetched rows into the answer; no I/O.

Each lookup is one function building its Query (`sorsync.lookup.units`, `.status`, `.resolve`).
Two thin executors only fetch and map errors: `run(conn, query)` here on a SQLAlchemy
Connection (the CLI, the UI, the sync routes) and `await arun(conn, query)` in
`sorsync.lookup.aio` on a psycopg AsyncConnection (the hot routes, on the event loop). A lookup
of several queries, or of none when a cache already knows the answer, is a generator of Queries
(`Steps`): it yields each Query, is sent back its shaped answer and returns the result;
`run_steps` and `aio.arun_steps` drive it.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

import psycopg
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

T = TypeVar("T")
Rows = list[tuple[Any, ...]]


@dataclass(frozen=True, slots=True)
class Query(Generic[T]):
    """One round trip: `sql` (psycopg `%(name)s` placeholders) with `params`, and `shape`,
    which turns the fetched rows into the lookup's answer."""

    sql: str
    params: Mapping[str, Any]
    shape: Callable[[Rows], T]


# Yields Queries, is sent each one's answer, returns the lookup's result.
Steps = Generator[Query[Any], Any, T]


def comma_text(values: Iterable[str]) -> str:
    """`values` as one comma-separated text, for SQL that splits it (`string_to_array(…, ',')`):
    psycopg dumps a list parameter element by element in Python, which cost the batch lookups
    a tenth of their time (docs/performance.md). Validated codes are ASCII letters and digits,
    so a comma in one is a caller's mistake: ValueError."""
    values = list(values)
    joined = ",".join(values)
    if values and joined.count(",") != len(values) - 1:
        raise ValueError("a code cannot contain a comma here; validate the codes first")
    return joined


def as_fetched(rows: Rows) -> Rows:
    """The rows as fetched (the shape of a plain query)."""
    return rows


def database_error(
    sql: str, params: Mapping[str, Any], exc: psycopg.Error, *, invalidated: bool = False
) -> DBAPIError:
    """`exc` as the SQLAlchemy exception the API's handlers expect (OperationalError → 503)."""
    error = DBAPIError.instance(
        sql, dict(params), exc, psycopg.Error, connection_invalidated=invalidated
    )
    assert isinstance(error, DBAPIError)  # what it makes of any driver error
    return error


def run(conn: Connection, query: Query[T]) -> T:
    """`query` on the connection's driver cursor, its rows shaped into the answer.

    Lookups are tiny indexed queries, so per-call overhead dominates: SQLAlchemy's result
    layer rebuilds column metadata for every textual query (≈150 µs for a 21-column row),
    the driver cursor does not. Errors still surface as SQLAlchemy DBAPIError subclasses, and a
    dropped connection is invalidated, as SQLAlchemy itself would do.
    """
    raw: psycopg.Connection[Any] = conn.connection.driver_connection  # type: ignore[assignment]
    try:
        # Binary results: timestamps and bigints arrive without text parsing.
        with raw.cursor(binary=True) as cursor:
            rows = cursor.execute(query.sql, query.params).fetchall()
    except psycopg.Error as exc:
        disconnect = conn.dialect.is_disconnect(cast(Any, exc), conn.connection, None)
        if disconnect:
            conn.invalidate()
        raise database_error(query.sql, query.params, exc, invalidated=disconnect) from exc
    return query.shape(rows)


def run_steps(conn: Connection, steps: Steps[T]) -> T:
    """A lookup of several queries (or none) on the connection, each as `run` runs it."""
    answer: Any = None  # what a fresh generator is first sent
    try:
        while True:
            answer = run(conn, steps.send(answer))
    except StopIteration as done:
        return cast(T, done.value)


def fetch(conn: Connection, sql: str, params: Mapping[str, Any]) -> Rows:
    """`sql`'s rows, as `run` fetches them (for queries that are no lookup of their own)."""
    return run(conn, Query(sql, params, as_fetched))
