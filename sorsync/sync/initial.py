"""The first full: a full sync into an empty replica, all datatypes in one transaction.

Every page is COPied straight into its live table (sorsync.sync.store, `empty`), the tokens
moving with the pages inside the transaction. Readers see the empty replica until it commits,
and a failure rolls all of it back, so it is as atomic as a full into shadow tables
(sorsync.sync.full) without the shadow tables or the reconciliation join.

The indexes that sorsync.db.views leaves off empty tables (`Run.indexes`: the name search's
trigram GIN) are built once a datatype's rows are in, still inside the transaction: built once,
a GIN costs less than kept up row by row (docs/performance.md). CREATE INDEX locks out writers
only, which the sync lock keeps away anyway.
"""

from __future__ import annotations

from typing import Any

import psycopg

from sorsync.datatypes import Datatype
from sorsync.krs import wire
from sorsync.sync import binding, reconcile, sql
from sorsync.sync.load import load
from sorsync.sync.results import DatatypeResult
from sorsync.sync.run import Run
from sorsync.sync.store import page_store


def applies(pg: psycopg.Connection[Any], dts: list[Datatype]) -> bool:
    """Is the replica of every datatype empty (so a full may load it this way)?"""
    for dt in dts:
        row = pg.execute(sql.exists_any(dt)).fetchone()
        if row is None or row[0]:
            return False
    return True


def _build_indexes(
    run: Run, pg: psycopg.Connection[Any], dt: Datatype, res: DatatypeResult
) -> None:
    statements = run.indexes.get(dt.table, [])
    if not statements:
        return
    run.progress(dt.key, "swap", res)
    for statement in statements:  # IF NOT EXISTS: a table may have them from before
        pg.execute(statement)


def run_initial(
    run: Run, pg: psycopg.Connection[Any], dts: list[Datatype], results: dict[str, DatatypeResult]
) -> None:
    stores = [page_store(dt, run.run_id, "empty") for dt in dts]
    failed: tuple[Datatype, BaseException] | None = None
    current = dts[0]
    try:
        with pg.transaction():
            for store in stores:
                current = store.dt
                store.prepare(pg)
                load(run, pg, store, results[store.dt.key], wire.START_TOKEN)
                _build_indexes(run, pg, store.dt, results[store.dt.key])
            for dt in dts:
                current = dt
                res = results[dt.key]
                run.mark_success(pg, dt, res, res.token or wire.START_TOKEN)
                if run.source_identity is not None:
                    binding.rebind(pg, run.source_identity, dt)
                res.reconciliation = reconcile.initial(
                    pg, dt, examples=run.examples, natural_key=run.natural_key(dt)
                )
    except Exception as exc:
        failed = (current, exc)
    finally:
        for store in stores:
            store.drop_stage(pg)
    if failed is not None:
        # Recorded only now: the rolled-back transaction held the sync_state rows.
        for dt in dts:
            res = results[dt.key]
            res.reconciliation = None
            res.inserted = res.updated = 0
            res.token = None
            if dt is failed[0]:
                run.fail(dt, res, failed[1])
            else:
                res.status = "skipped"
                res.error = "not applied: another datatype failed"
        return
    for dt in dts:
        res = results[dt.key]
        res.status = "ok"
        run.progress(dt.key, "done", res)
