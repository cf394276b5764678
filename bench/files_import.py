"""Benchmark: one import of the SOR2 file export (sorsync.files) into an empty replica, or a
second one over a filled replica (--refull: the shadow load, reconciliation and apply).

The export is the generator's fictive tree of --units units after a night of changes, written
by the simulator as `Sor_complete.zip` (sorsync.simulator.export) in a child process of its
own; the import runs in another, so its time, CPU and peak RSS are its alone. A scratch database
on the server of SORSYNC_TEST_DATABASE_URL is created, migrated and dropped. Prints one JSON
line: {units, rows, zip_mb, seconds, rows_per_s, cpu_s, peak_rss_mb, ...}.

    .venv/bin/python -m bench.files_import --units 100000
    .venv/bin/python -m bench.files_import --units 100000 --refull
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import cpu_seconds, emit, in_child, scratch_database


def _write(units: int, seed: int, path: str) -> dict[str, Any]:
    from sorsync.simulator.demo import load_generated
    from sorsync.simulator.export import write_export
    from sorsync.simulator.store import Store

    started = time.perf_counter()
    store = Store()
    load_generated(store, units, seed=seed, evolve_changes=max(1, units // 200), days=1)
    written = write_export(store, Path(path))
    return {"rows": written, "write_s": round(time.perf_counter() - started, 1)}


def _import(database_url: str, path: str, refull: bool) -> dict[str, Any]:
    from sorsync.config import load_settings
    from sorsync.db.engine import make_engine
    from sorsync.logs import configure
    from sorsync.sync.service import run_sync

    configure(level="WARNING")
    settings = load_settings(source="files", files_url=path, krs_url=None)
    engine = make_engine(database_url)
    try:
        if refull:
            first = run_sync(engine, settings, kind="full")
            assert first.ok, first.error
        cpu = cpu_seconds()
        started = time.perf_counter()
        # rebind: import even an unchanged file (a local file is compared by its SHA-256)
        result = run_sync(engine, settings, kind="full", rebind=True)
        seconds = time.perf_counter() - started
        cpu = cpu_seconds() - cpu
    finally:
        engine.dispose()
    assert result.ok, result.error
    return {
        "records": result.records,
        "seconds": round(seconds, 3),
        "records_per_s": round(result.records / seconds) if seconds else None,
        "cpu_s": round(cpu, 3),
        "apply_s": round(max(d.apply_seconds for d in result.datatypes), 3),
        "by_datatype": {d.key: d.records for d in result.datatypes},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--refull", action="store_true", help="time a second import")
    parser.add_argument("--database-url", default=os.environ.get("SORSYNC_TEST_DATABASE_URL"))
    args = parser.parse_args()
    if not args.database_url:
        parser.error("give --database-url or set SORSYNC_TEST_DATABASE_URL")
    os.environ["SORSYNC_TEST_DATABASE_URL"] = args.database_url  # scratch_database's server
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "Sor_complete.zip"
        written = in_child(_write, args.units, args.seed, str(path))
        with scratch_database() as url:
            measured = in_child(_import, url, str(path), args.refull)
        emit(
            {
                "bench": "files_import",
                "kind": "refull" if args.refull else "first",
                "units": args.units,
                "rows": written["rows"],
                "zip_mb": round(path.stat().st_size / 1e6, 1),
                "write_s": written["write_s"],
                **measured,
            }
        )


if __name__ == "__main__":
    main()
