"""Benchmark: the client's parse of one KRS answer — `feed.parse_response(..., copy_rows=True)`
of a 2 000-record page, as the sync calls it — for SOR2's sorentity and v1's sygehusafdeling.

No database, no HTTP: the page is rendered by the simulator in this process, then parsed
`--repeat` times; prints one JSON line per datatype with CPU milliseconds per page (the best
and the median of the repeats) and CPU seconds per 100 000 records.

    .venv/bin/python -m bench.parse_page [--repeat 30]
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime

from bench.common import KEY, ROWS, SORENTITY, emit


def page_body(key: str, records: int) -> bytes:
    from sorsync.datatypes import lookup
    from sorsync.simulator.render import render_response
    from sorsync.simulator.store import Store

    store = Store()
    table = store.table(key)
    with store.import_run(datetime(2024, 1, 1, tzinfo=UTC)) as modified:
        for i in range(records):
            table.insert(ROWS[key](i), modified)
    return render_response(lookup(key), table.page((0, 0), records), None)


def measure(key: str, repeat: int) -> dict[str, object]:
    from sorsync.datatypes import lookup
    from sorsync.krs import wire
    from sorsync.krs.feed import parse_response

    dt = lookup(key)
    body = page_body(key, wire.MAX_RECORDS)
    page = parse_response(body, 200, dt, copy_rows=True)
    assert page.copy_rows is not None, "the benchmark page should need no judgement"
    times: list[float] = []
    for _ in range(repeat):
        started = time.process_time()
        parse_response(body, 200, dt, copy_rows=True)
        times.append(time.process_time() - started)
    best, median = min(times), statistics.median(times)
    return {
        "bench": "parse_page",
        "datatype": key,
        "records": len(page),
        "bytes": len(body),
        "cpu_ms_best": round(best * 1000, 2),
        "cpu_ms_median": round(median * 1000, 2),
        "cpu_s_per_100k_median": round(median * 100_000 / len(page), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    for key in (SORENTITY, KEY):
        emit(measure(key, args.repeat))


if __name__ == "__main__":
    main()
