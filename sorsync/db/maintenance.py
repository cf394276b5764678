"""Index upkeep after a sync: flushing the GIN pending lists of the replica tables it changed.

The trigram indexes behind name search (`ix_*_navn_trgm` on the v1 tables, `ixm_*_entity_name_*`
on SOR2's sorentity) are GIN with fastupdate: rows a sync adds go to the index's unsorted
pending list, which every search then reads in full until (auto)vacuum merges it. After a bulk
load that list is megabytes long and made a name search on 100 000 units several times slower
(docs/ui.md), so each sync merges it at once with `gin_clean_pending_list`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

import psycopg
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from sorsync.db.models import KRS_SCHEMA
from sorsync.logs import get_logger

GIN_INDEXES = """
SELECT i.indexrelid::regclass::text, i.indexrelid::oid
  FROM pg_index i
  JOIN pg_class t ON t.oid = i.indrelid
  JOIN pg_namespace n ON n.oid = t.relnamespace
  JOIN pg_class x ON x.oid = i.indexrelid
  JOIN pg_am am ON am.oid = x.relam
 WHERE n.nspname = %(schema)s AND t.relname = ANY(%(tables)s) AND am.amname = 'gin'
 ORDER BY 1
"""


def clean_gin_pending_lists(engine: Engine, tables: Iterable[str]) -> int | None:
    """Merge the pending lists of the GIN indexes on `krs.<table>` for each of `tables`; the
    number of pending pages merged, or None when the database refused (the function needs
    the index owner's rights and a primary). A refusal is logged once as a warning saying
    what to do and never raised: search stays correct, only slower until autovacuum runs."""
    names = sorted(set(tables))
    if not names:
        return 0
    try:
        raw = engine.raw_connection()
    except (psycopg.Error, DBAPIError) as exc:
        _warn(exc)
        return None
    pg: psycopg.Connection[Any] = raw.driver_connection  # type: ignore[assignment]
    try:
        pg.rollback()
        pg.autocommit = True  # one short transaction per index: each merge holds its lock briefly
        found = pg.execute(GIN_INDEXES, {"schema": KRS_SCHEMA, "tables": names}).fetchall()
        cleaned = 0
        for _name, oid in found:
            row = pg.execute("SELECT gin_clean_pending_list(%s::oid::regclass)", (oid,)).fetchone()
            cleaned += int(row[0]) if row and row[0] is not None else 0
        return cleaned
    except psycopg.Error as exc:
        _warn(exc)
        return None
    finally:
        with contextlib.suppress(psycopg.Error):
            pg.autocommit = False
        raw.close()


def _warn(exc: BaseException) -> None:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    get_logger("sorsync.db").warning(
        "could not flush the name-search indexes' GIN pending lists; name search is slower"
        " until autovacuum does it. Run the sync as the owner of the krs tables (on the"
        " primary), or run VACUUM on the changed krs tables",
        error=first,
    )
