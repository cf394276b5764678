"""Benchmark: a full sync end to end — simulator (own process) → HTTP → KRS client → engine →
PostgreSQL — of N synthetic sygehusafdeling records (the widest SOR datatype).

The simulator runs in a child process so that the CPU time and peak RSS reported are the sync
process's alone. A fresh database is created on the server of --database-url (default
SORSYNC_TEST_DATABASE_URL), migrated, synced into, and dropped. Prints one JSON line:
{records, seconds, records_per_s, client_cpu_s, peak_rss_mb, ...}.

    .venv/bin/python bench/sync_full.py --records 100000            # first full (empty replica)
    .venv/bin/python bench/sync_full.py --records 100000 --refull   # nightly full (shadow path)
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import time
import uuid
from datetime import datetime
from multiprocessing.connection import Connection
from zoneinfo import ZoneInfo

from sqlalchemy import make_url, text

CPH = ZoneInfo("Europe/Copenhagen")
KEY = "sor/sygehusafdeling/v1"


def _simulator(records: int, conn: Connection) -> None:
    """Child process: fill a store with `records` rows (one import run) and serve it."""
    from sorsync.datatypes import DATATYPES, FieldType
    from sorsync.simulator import server
    from sorsync.simulator.store import Store

    dt = DATATYPES[KEY]
    store = Store()
    end = datetime(2999, 12, 31, tzinfo=CPH)
    start = datetime(2020, 1, 1, tzinfo=CPH)
    table = store.table(KEY)
    with store.import_run() as modified:
        for i in range(records):
            values: dict[str, object] = {}
            for f in dt.fields:
                if f.element == "validTo":
                    values[f.element] = end
                elif f.type is FieldType.TIMESTAMP:
                    values[f.element] = start
                elif f.type is FieldType.BIGINT:
                    values[f.element] = 1_000_016_000_000_000 + i
                else:
                    values[f.element] = f"{f.element} {i} Ærø"
            table.insert(values, modified)
    handle = server.serve_in_thread(store)
    conn.send(handle.url)
    conn.recv()  # until the parent is done
    handle.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--page-size", type=int, default=2000)
    parser.add_argument("--database-url", default=os.environ.get("SORSYNC_TEST_DATABASE_URL"))
    parser.add_argument("--no-prefetch", action="store_true", help="fetch and store in turn")
    parser.add_argument(
        "--refull",
        action="store_true",
        help="time a second full over a filled replica (shadow load, reconcile, apply) instead"
        " of the first one",
    )
    args = parser.parse_args()
    if not args.database_url:
        parser.error("give --database-url or set SORSYNC_TEST_DATABASE_URL")

    from sorsync.config import Settings
    from sorsync.datatypes import DATATYPES
    from sorsync.db import migrate
    from sorsync.db.engine import make_engine
    from sorsync.krs.client import KrsClient
    from sorsync.logs import configure
    from sorsync.sync import sync

    configure(level="WARNING")
    server_url = Settings(test_database_url=args.database_url).test_database_url
    assert server_url is not None
    name = f"sorsync_bench_{uuid.uuid4().hex[:8]}"
    admin = make_engine(server_url, pool=False)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)

    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_simulator, args=(args.records, child))
    proc.start()
    try:
        migrate.upgrade(url)
        krs_url = parent.recv()
        engine = make_engine(url)
        with KrsClient(krs_url, timeout=120) as client:
            if args.refull:
                sync(engine, client, [DATATYPES[KEY]], kind="full")
            before = resource.getrusage(resource.RUSAGE_SELF)
            started = time.perf_counter()
            result = sync(
                engine,
                client,
                [DATATYPES[KEY]],
                kind="full",
                page_size=args.page_size,
                prefetch=not args.no_prefetch,
            )
            seconds = time.perf_counter() - started
            after = resource.getrusage(resource.RUSAGE_SELF)
        engine.dispose()
    finally:
        parent.send("stop")
        proc.join(timeout=30)
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(
        json.dumps(
            {
                "records": result.records,
                "seconds": round(seconds, 3),
                "records_per_s": round(result.records / seconds) if seconds else None,
                "client_cpu_s": round(cpu, 3),
                "peak_rss_mb": round(after.ru_maxrss / 1024, 1),  # Linux: KiB
                "status": result.status,
                "store_s": round(result.datatypes[0].store_seconds, 3),
                "apply_s": round(result.datatypes[0].apply_seconds, 3),
                "kind": "refull" if args.refull else "full",
                "pages": result.pages,
                "page_size": args.page_size,
                "prefetch": not args.no_prefetch,
            }
        )
    )


if __name__ == "__main__":
    main()
