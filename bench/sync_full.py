"""Benchmark: a full sync end to end — simulator (own process) → HTTP → KRS client → engine →
PostgreSQL — of N synthetic sygehusafdeling records (the widest SOR datatype), the same rows
`bench.run_all` syncs.

The simulator runs in a child process so that the CPU time and peak RSS reported are the sync
process's alone. A fresh database is created on the server of --database-url (default
SORSYNC_TEST_DATABASE_URL), migrated, synced into, and dropped. Prints one JSON line:
{records, seconds, records_per_s, client_cpu_s, peak_rss_mb, ...}.

    .venv/bin/python bench/sync_full.py --records 100000            # first full (empty replica)
    .venv/bin/python bench/sync_full.py --records 100000 --refull   # nightly full (shadow path)
    .venv/bin/python bench/sync_full.py --records 100000 --replay   # the simulator's pages recorded
                                                                    # first, then replayed
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy import Engine

from bench.common import KEY, ROWS, Replay, Simulator, scratch_database


def backend_cpu(engine: Engine) -> float | None:
    """CPU seconds used so far by the PostgreSQL backends serving this database (sum of
    /proc/PID/stat utime + stime): the server's share of a sync, steadier than wall time on a
    shared host. None when the server is not on this machine or its processes are not readable.
    A backend that starts after the first reading counts whole; one that ends before the second
    is missed (the sync's engine keeps its pooled connections open until it is disposed)."""
    from sqlalchemy import text

    with engine.connect() as conn:
        pids = conn.execute(
            text(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid()"
            )
        ).scalars()
        total = 0.0
        try:
            for pid in pids:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:
            return None
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument(
        "--datatype",
        default=KEY,
        choices=sorted(ROWS),
        help="the v1 datatype (16 typed fields) or SOR2's sorentity (~70 elements, stored whole)",
    )
    parser.add_argument("--page-size", type=int, default=2000)
    parser.add_argument("--database-url", default=os.environ.get("SORSYNC_TEST_DATABASE_URL"))
    parser.add_argument("--no-prefetch", action="store_true", help="fetch and store in turn")
    parser.add_argument(
        "--refull",
        action="store_true",
        help="time a second full over a filled replica (shadow load, reconcile, apply) instead"
        " of the first one",
    )
    parser.add_argument(
        "--replay",
        action="store_true",
        help="record the simulator's pages first and sync from a process that only replays them"
        " (a source that costs this machine nothing, like NSP)",
    )
    args = parser.parse_args()
    if not args.database_url:
        parser.error("give --database-url or set SORSYNC_TEST_DATABASE_URL")
    if args.replay and args.page_size != 2000:
        parser.error("--replay records pages of 2000 records; leave --page-size at 2000")
    if args.replay and args.datatype != KEY:
        parser.error("--replay records the v1 benchmark datatype only")

    from sorsync.config import Settings
    from sorsync.datatypes import lookup
    from sorsync.db import views
    from sorsync.db.engine import make_engine
    from sorsync.krs.client import KrsClient
    from sorsync.logs import configure
    from sorsync.sync import sync

    configure(level="WARNING")
    os.environ["SORSYNC_TEST_DATABASE_URL"] = args.database_url  # scratch_database's server
    with contextlib.ExitStack() as stack:
        source: Simulator | Replay = stack.enter_context(Simulator(args.records, args.datatype))
        if args.replay:
            source = stack.enter_context(Replay(source.url))
        url = stack.enter_context(scratch_database())
        engine = make_engine(url)
        indexes = views.indexes_by_table(Settings().mapping)  # as sorsync.sync.service passes them
        with KrsClient(source.url, timeout=120) as client:
            if args.refull:
                sync(engine, client, [lookup(args.datatype)], kind="full", indexes=indexes)
            probe = make_engine(url, pool=False)  # not one of the sync's connections
            server_before = backend_cpu(probe)
            before = resource.getrusage(resource.RUSAGE_SELF)
            started = time.perf_counter()
            result = sync(
                engine,
                client,
                [lookup(args.datatype)],
                kind="full",
                page_size=args.page_size,
                prefetch=not args.no_prefetch,
                indexes=indexes,
            )
            seconds = time.perf_counter() - started
            after = resource.getrusage(resource.RUSAGE_SELF)
            server_after = backend_cpu(probe)
            probe.dispose()
        engine.dispose()

    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(
        json.dumps(
            {
                "datatype": args.datatype,
                "records": result.records,
                "seconds": round(seconds, 3),
                "records_per_s": round(result.records / seconds) if seconds else None,
                "client_cpu_s": round(cpu, 3),
                "server_cpu_s": (
                    round(server_after - server_before, 3)
                    if server_before is not None and server_after is not None
                    else None
                ),
                "peak_rss_mb": round(after.ru_maxrss / 1024, 1),  # Linux: KiB
                "status": result.status,
                "store_s": round(result.datatypes[0].store_seconds, 3),
                "apply_s": round(result.datatypes[0].apply_seconds, 3),
                "kind": "refull" if args.refull else "full",
                "source": "replay" if args.replay else "simulator",
                "pages": result.pages,
                "page_size": args.page_size,
                "prefetch": not args.no_prefetch,
            }
        )
    )


if __name__ == "__main__":
    main()
