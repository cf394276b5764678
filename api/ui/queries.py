"""The few reads the web UI needs beyond sorsync.lookup: units by many SOR ids, a SHAK code's
whole history, the recent sync runs. Built from lookup's COLUMNS and Unit, so new columns of
`sor.unit` (SOR2) reach the pages without changes here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection

from sorsync.lookup import Unit
from sorsync.lookup.query import fetch
from sorsync.lookup.units import COLUMNS, day_start

_U = ", ".join(f"u.{c.strip()}" for c in COLUMNS.split(","))
_VALID = (
    "(u.valid_from IS NULL OR u.valid_from <= %(at)s) "
    "AND (u.valid_to IS NULL OR %(at)s < u.valid_to)"
)

# One version per id (an index scan on sor_id in each branch of the view).
UNITS_ON = (
    f"SELECT DISTINCT ON (u.sor_id) {_U} FROM sor.unit u"
    f" WHERE u.sor_id = ANY(%(ids)s) AND {_VALID}"
    " ORDER BY u.sor_id, u.valid_from NULLS FIRST, u.pid"
)


def units_on(conn: Connection, ids: list[int], day: date) -> dict[int, Unit]:
    """The version of each of `ids` valid on `day` (ids with none are absent)."""
    if not ids:
        return {}
    rows = fetch(conn, UNITS_ON, {"ids": sorted(set(ids)), "at": day_start(day)})
    return {u.sor_id: u for u in map(Unit._make, rows)}


VERSIONS = (
    f"SELECT {_U} FROM sor.unit u WHERE u.sor_id = ANY(%(ids)s)"
    " ORDER BY u.sor_id, u.valid_from NULLS FIRST, u.pid"
)


def versions(conn: Connection, ids: list[int]) -> list[Unit]:
    """Every version of each of `ids`, by SOR id, oldest first."""
    if not ids:
        return []
    return [Unit._make(r) for r in fetch(conn, VERSIONS, {"ids": sorted(set(ids))})]


@dataclass(frozen=True, slots=True)
class ShakSpan:
    """A SOR unit carrying the SHAK code for a while (one row of `sor.shak_map`)."""

    sor_id: int
    valid_from: datetime | None
    valid_to: datetime | None


SHAK_HISTORY = (
    "SELECT DISTINCT m.sor_id, m.valid_from, m.valid_to FROM sor.shak_map m"
    " WHERE m.shak = %(code)s ORDER BY 1, 2 NULLS FIRST"
)


def shak_history(conn: Connection, code: str) -> list[ShakSpan]:
    return [ShakSpan(*row) for row in fetch(conn, SHAK_HISTORY, {"code": code})]


@dataclass(frozen=True, slots=True)
class Run:
    id: int
    kind: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    pages: int
    records: int
    error: str | None

    @property
    def seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return max(0.0, (self.finished_at - self.started_at).total_seconds())


RECENT_RUNS = (
    "SELECT id, kind, status, started_at, finished_at, pages, records, error"
    " FROM krs.sync_run ORDER BY id DESC LIMIT %(n)s"
)


def recent_runs(conn: Connection, n: int = 30) -> list[Run]:
    """The last `n` sync runs, oldest first (the order the chart draws them in)."""
    rows: list[tuple[Any, ...]] = fetch(conn, RECENT_RUNS, {"n": n})
    return [Run(*row) for row in reversed(rows)]


SOURCES = "SELECT register, register_version, datatype, version, source FROM krs.sync_state"


def sources(conn: Connection) -> dict[tuple[Any, ...], str | None]:
    """Where each datatype's replica came from, keyed (register, register_version, datatype,
    version) like krs.sync_state (sorsync.sync.status does not report it)."""
    return {tuple(row[:4]): row[4] for row in fetch(conn, SOURCES, {})}
