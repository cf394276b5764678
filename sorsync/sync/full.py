"""A full sync into a replica that holds rows: replay into shadow tables, then apply at once.

Every datatype is replayed from token 0 into a temporary shadow table (sorsync.sync.store,
`shadow`; no token moves). Only when every datatype has loaded does one transaction compare
each shadow with its live table (sorsync.sync.reconcile), refuse a result that would empty or
shrink the replica too far, apply the differences (delete, insert, update by PID) and set the
tokens. Readers see the old replica or the new one, never a mix; unchanged rows are not
rewritten, and the live tables stay the ones the `sor` views are bound to.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import psycopg

from sorsync.datatypes import Datatype
from sorsync.krs import wire
from sorsync.sync import binding, reconcile, sql
from sorsync.sync.load import load
from sorsync.sync.reconcile import Reconciliation
from sorsync.sync.results import SHRINK_REFUSED, DatatypeResult, SwapRefused
from sorsync.sync.run import Run, log
from sorsync.sync.store import page_store


def run_full(
    run: Run, pg: psycopg.Connection[Any], dts: list[Datatype], results: dict[str, DatatypeResult]
) -> None:
    tokens: dict[str, str] = {}
    try:
        for i, dt in enumerate(dts):
            res = results[dt.key]
            store = page_store(dt, run.run_id, "shadow")
            try:
                store.prepare(pg)
                tokens[dt.key] = load(run, pg, store, res, wire.START_TOKEN)
                pg.execute(sql.analyze(sql.shadow(dt)))
            except Exception as exc:
                if not run.fail_and_go_on(dt, exc, dts[i + 1 :], results):
                    break
            finally:
                store.drop_stage(pg)
        if any(r.status == "failed" for r in results.values()):
            # Nothing is applied unless everything loaded: the replica stays as it was.
            for dt in dts:
                res = results[dt.key]
                if res.status == "pending":
                    res.status = "skipped"
                    res.error = "loaded but not applied: another datatype failed"
            return
        _swap(run, pg, dts, results, tokens)
    finally:
        for dt in dts:
            with contextlib.suppress(psycopg.Error):
                pg.execute(sql.drop(sql.shadow(dt)))


def _check_shrink(run: Run, dt: Datatype, recon: Reconciliation) -> None:
    if recon.new_rows == 0 and recon.old_rows > 0:
        raise SwapRefused(
            f"the full sync of {dt.key} received no rows, but the replica holds"
            f" {recon.old_rows}; KRS never deletes rows, so this is refused and"
            " nothing was changed — check SORSYNC_KRS_URL and the CVR's"
            " permissions"
        )
    # A source that lost most of its rows (a broken import, a wrong view) must not empty the
    # replica: KRS itself never deletes rows.
    if recon.old_rows > 0 and recon.only_old > run.max_shrink * recon.old_rows:
        raise SwapRefused(
            f"{SHRINK_REFUSED}: the full sync of {dt.key} would remove"
            f" {recon.only_old} of the replica's {recon.old_rows} rows"
            f" ({recon.only_old / recon.old_rows:.0%}, more than the"
            f" {run.max_shrink:.0%} SORSYNC_FULL_MAX_SHRINK allows; received"
            f" {recon.new_rows}, {recon.only_new} new, {recon.changed} changed);"
            " nothing was changed — if the source really shrank, run"
            " `sorsync sync --full --allow-shrink` once"
        )


def _swap(
    run: Run,
    pg: psycopg.Connection[Any],
    dts: list[Datatype],
    results: dict[str, DatatypeResult],
    tokens: dict[str, str],
) -> None:
    for dt in dts:
        run.progress(dt.key, "swap", results[dt.key])
    started = time.perf_counter()
    current: Datatype | None = None
    try:
        with pg.transaction():
            recons: dict[str, Reconciliation] = {}
            for dt in dts:
                current = dt
                recon = reconcile.compute(
                    pg, dt, examples=run.examples, natural_key=run.natural_key(dt)
                )
                _check_shrink(run, dt, recon)
                recons[dt.key] = recon
            for dt in dts:
                current = dt
                res = results[dt.key]
                deleted = pg.execute(sql.delete_missing(dt)).rowcount
                counts = pg.execute(
                    sql.merge(dt, source=sql.shadow(dt), target=sql.live(dt), dedupe=False)
                ).fetchone()
                assert counts is not None
                res.inserted, res.updated, res.deleted = int(counts[0]), int(counts[1]), deleted
                res.reconciliation = recons[dt.key]
                res.token = tokens[dt.key]
                pg.execute(sql.SET_TOKEN, (*sql.state_key(dt), res.token))
                run.mark_success(pg, dt, res, res.token)
                if run.source_identity is not None:
                    binding.rebind(pg, run.source_identity, dt)
            current = None
    except Exception as exc:
        for dt in dts:
            res = results[dt.key]
            res.reconciliation = None
            res.inserted = res.updated = res.deleted = 0
            if current is not None and dt.key == current.key:
                run.fail(dt, res, exc)
            else:
                res.status = "skipped"
                res.error = "loaded but not applied: the swap failed"
        return
    seconds = time.perf_counter() - started
    for dt in dts:
        res = results[dt.key]
        res.status = "ok"
        res.apply_seconds = seconds
        assert res.reconciliation is not None
        log().info(
            "full sync applied",
            datatype=dt.key,
            reconciliation=res.reconciliation.summary(),
            swap_seconds=round(seconds, 3),
        )
        run.progress(dt.key, "done", res)
