"""The page store: one KRS page into PostgreSQL, in one transaction, the same way for every mode.

A page is COPied into the datatype's staging table (temporary, emptied at each commit), then
merged by PID into its target: the live table (a delta), the shadow table (a full, applied
later by sorsync.sync.full) or the empty live table of a first full (sorsync.sync.initial),
where the page is COPied straight in and merged only when a PID comes twice. Where the target
is live, the datatype's token moves in the same transaction as the page's rows: the token never
passes data that is not stored. Every page also counts into its run's row in `krs.sync_run`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Literal

import orjson
import psycopg
import psycopg.sql
from psycopg.types.json import Jsonb

from sorsync.datatypes import Datatype
from sorsync.krs.feed import CopyRows, Page
from sorsync.sync import sql

# live: merged into the live table with the token (a delta). shadow: merged into the shadow
# table, no token (a full; the tokens are set when it applies). empty: the first full, inside
# its one transaction: COPY into the live table, the token moving with each page.
Into = Literal["live", "shadow", "empty"]


@dataclass(frozen=True, slots=True)
class PageStore:
    """Where the pages of one datatype of one run go; build with `page_store`."""

    dt: Datatype
    run_id: int
    into: Into
    target: psycopg.sql.Identifier
    copy: psycopg.sql.Composed  # COPY into the staging table
    merge: psycopg.sql.Composed  # staging → target by PID, the latest delivery winning
    types: list[str]

    @property
    def with_token(self) -> bool:
        return self.into != "shadow"

    def prepare(self, pg: psycopg.Connection[Any]) -> None:
        """(Re)create the staging table, and the shadow table when the target is one."""
        stmts = sql.create_stage(self.dt)
        if self.into == "shadow":
            stmts += sql.create_shadow(self.dt)
        for stmt in stmts:
            pg.execute(stmt)

    def drop_stage(self, pg: psycopg.Connection[Any]) -> None:
        # Best effort: a lost connection takes its temporary tables with it anyway.
        with contextlib.suppress(psycopg.Error):
            pg.execute(sql.drop(sql.stage(self.dt)))

    def store(self, pg: psycopg.Connection[Any], page: Page) -> tuple[int, int]:
        """Store `page` in one transaction (a savepoint inside the first full's); returns the
        rows (inserted, updated)."""
        dt = self.dt
        rows = page.copy_rows if page.copy_rows is not None else _rows(dt, page)
        if self.into == "empty":
            # COPY straight into the (empty) live table, its indexes kept up by PostgreSQL
            # while the next page is fetched and parsed. The savepoint takes the page back when
            # a PID comes a second time (a row changed while the feed was read); that page is
            # merged below instead, the later version winning.
            try:
                with pg.transaction(), pg.cursor() as cur:
                    _copy_rows(cur, sql.copy_into(dt, self.target), self.types, rows)
                    self._page_done(cur, page)
                return len(page), 0
            except psycopg.errors.UniqueViolation:
                pass
        with pg.transaction(), pg.cursor() as cur:
            _copy_rows(cur, self.copy, self.types, rows)
            cur.execute(self.merge)
            counts = cur.fetchone()
            assert counts is not None
            if self.into == "empty":
                # Inside one long transaction ON COMMIT DELETE ROWS comes too late.
                cur.execute(sql.truncate(sql.stage(dt)))
            self._page_done(cur, page)
        return int(counts[0]), int(counts[1])

    def _page_done(self, cur: psycopg.Cursor[Any], page: Page) -> None:
        if self.with_token:
            cur.execute(sql.SET_TOKEN, (*sql.state_key(self.dt), page.last_token))
        cur.execute(sql.RUN_PROGRESS, (len(page), self.run_id))


def page_store(dt: Datatype, run_id: int, into: Into) -> PageStore:
    target = sql.shadow(dt) if into == "shadow" else sql.live(dt)
    return PageStore(
        dt=dt,
        run_id=run_id,
        into=into,
        target=target,
        copy=sql.copy_into(dt, sql.stage(dt)),
        merge=sql.merge(dt, source=sql.stage(dt), target=target, dedupe=True),
        types=sql.copy_types(dt),
    )


def _copy_rows(
    cur: psycopg.Cursor[Any],
    copy_sql: psycopg.sql.Composed,
    types: list[str],
    rows: list[tuple[object, ...]] | CopyRows,
) -> None:
    with cur.copy(copy_sql) as copy:
        if isinstance(rows, CopyRows):
            copy.write(rows.data)  # already the whole COPY BINARY stream
            return
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)


def _dumps(value: object) -> bytes:
    return orjson.dumps(value)


def _rows(dt: Datatype, page: Page) -> list[tuple[object, ...]]:
    """The page's entries as COPY rows (`sql.columns` order)."""
    rows: list[tuple[object, ...]] = []
    if dt.is_document:
        for e in page.entries:
            namespace, record = e.values
            rows.append((e.pid, e.modified_at, e.token, namespace, Jsonb(record, _dumps)))
        return rows
    width = len(dt.fields)
    for e in page.entries:
        if len(e.values) != width:
            raise ValueError(
                f"entry {e.token} of {dt.key} has {len(e.values)} values for {width} fields"
            )
        rows.append((e.pid, e.modified_at, e.token, *e.values, e.extra))
    return rows
