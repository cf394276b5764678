"""Async variants of the hot lookups, on a psycopg AsyncConnection.

The API answers single lookups on the event loop: handing each one to a worker thread cost more
CPU than the query itself, and the GIL hand-over between the loop and the workers made the
latency tail (p99 ≈ 10× p50 under load). Same SQL as `sorsync.lookup.units`; errors surface as
SQLAlchemy DBAPIError subclasses, as there, so the API maps them to 503 the same way.
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

import psycopg
from sqlalchemy.exc import DBAPIError

from sorsync.lookup.resolve import (
    RESOLVE,
    Answer,
    AnswerCache,
    Item,
    answer,
    distinct_keys,
    group_rows,
    query_params,
)
from sorsync.lookup.status import DATA_VERSION, NO_VERSION, DataVersion
from sorsync.lookup.units import (
    BY_SHAK,
    EXISTS,
    RESOLVED,
    TREE_WITH_CHILDREN,
    Unit,
    UnitTree,
    day_start,
    tree_params,
)

AsyncConn = psycopg.AsyncConnection[Any]


def database_error(sql: str, params: Mapping[str, Any], exc: psycopg.Error) -> DBAPIError:
    """`exc` as the SQLAlchemy exception the API's handlers expect (OperationalError → 503)."""
    error = DBAPIError.instance(sql, dict(params), exc, psycopg.Error)
    assert isinstance(error, DBAPIError)  # what it makes of any driver error
    return error


async def fetch(conn: AsyncConn, sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    try:
        async with conn.cursor(binary=True) as cursor:
            await cursor.execute(sql, params)
            return await cursor.fetchall()
    except psycopg.Error as exc:
        raise database_error(sql, params, exc) from exc


async def _units(conn: AsyncConn, sql: str, params: Mapping[str, Any]) -> list[Unit]:
    make = Unit._make
    return [make(row) for row in await fetch(conn, sql, params)]


async def by_shak(conn: AsyncConn, code: str, day: date) -> list[Unit]:
    """As `sorsync.lookup.by_shak`."""
    return await _units(conn, BY_SHAK, {"code": code, "at": day_start(day)})


async def resolved(conn: AsyncConn, kind: str, code: str, day: date) -> list[Unit]:
    """As `sorsync.lookup.resolved`."""
    return await _units(conn, RESOLVED[kind], {"code": code, "day": day})


async def unit_tree(conn: AsyncConn, sor_id: int, day: date) -> UnitTree | None:
    """As `sorsync.lookup.unit_tree`."""
    rows = await fetch(conn, TREE_WITH_CHILDREN, tree_params(sor_id, day))
    if not rows:
        return None
    seen: set[int] = set()
    path = []
    for row in rows:
        if row[0] not in seen:
            seen.add(row[0])
            path.append(Unit._make(row[:-1]))
    children: list[int] = rows[0][-1]
    return UnitTree(unit=path[0], ancestors=path[1:], children=children)


async def sor_id_known(conn: AsyncConn, sor_id: int) -> bool:
    """As `sorsync.lookup.sor_id_known`."""
    return bool((await fetch(conn, EXISTS, {"sor_id": sor_id}))[0][0])


async def data_version(conn: AsyncConn) -> DataVersion:
    """As `sorsync.lookup.data_version`."""
    rows = await fetch(conn, DATA_VERSION, {})
    return NO_VERSION if not rows else DataVersion(run_id=rows[0][0], finished_at=rows[0][1])


async def resolve_cached(
    conn: AsyncConn, items: Sequence[Item], cache: AnswerCache
) -> list[Answer]:
    """As `sorsync.lookup.resolve.resolve_cached`."""
    keys = distinct_keys(items, cache.answers)
    if not keys:
        return answer(items, cache.answers)
    fresh = group_rows(keys, await fetch(conn, RESOLVE, query_params(keys)))
    answers = answer(items, ChainMap(fresh, cache.answers))  # before an eviction, as there
    cache.add(fresh)
    return answers
