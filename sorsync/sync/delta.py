"""A delta sync: each datatype continues from its stored token, page by committed page.

Every page goes into the live table with its token (sorsync.sync.store), so a crash or a stop
leaves whole pages and the next run continues after the last one. A datatype that fails keeps
what it committed; the datatypes after it are tried only when its failure concerned it alone.
"""

from __future__ import annotations

from typing import Any

import psycopg

from sorsync.datatypes import Datatype
from sorsync.krs import wire
from sorsync.sync import sql
from sorsync.sync.load import load
from sorsync.sync.results import DatatypeResult
from sorsync.sync.run import Run
from sorsync.sync.store import page_store


def run_delta(
    run: Run, pg: psycopg.Connection[Any], dts: list[Datatype], results: dict[str, DatatypeResult]
) -> None:
    for i, dt in enumerate(dts):
        res = results[dt.key]
        store = page_store(dt, run.run_id, "live")
        try:
            store.prepare(pg)
            row = pg.execute(sql.READ_TOKEN, sql.state_key(dt)).fetchone()
            res.token = row[0] if row else wire.START_TOKEN
            load(run, pg, store, res, res.token)
            run.mark_success(pg, dt, res, res.token)
            res.status = "ok"
            run.progress(dt.key, "done", res)
        except Exception as exc:
            if not run.fail_and_go_on(dt, exc, dts[i + 1 :], results):
                return
        finally:
            store.drop_stage(pg)
