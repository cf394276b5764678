"""Benchmark: serve 2000-record pages from a 1 000 000-row sygehusafdeling table over HTTP.

Fills a simulator Store with synthetic rows (ten import runs of 100 000), starts the server on
127.0.0.1, then pages through from several starting tokens with a keep-alive session, timing
each call end to end (request, page lookup, rendering, transfer). Prints one JSON line:
{"datatype", "rows", "pages", "page_ms_p50", "page_ms_p95", "page_ms_max", "page_bytes",
"render_ms", "fill_s"} (render_ms: the best of five renderings of one 2000-record page alone).

With --sor2 the table is SOR2's sorentity (registerVersion 2), filled with copies of the rows a
generated tree gives (about 50 elements each, three addresses with coordinates).

    .venv/bin/python bench/simulator_page.py [--rows N] [--pages P] [--sor2]
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import statistics
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import requests

from sorsync.krs.wire import NS_KRS, NS_SOAP, SOAP_ACTION, make_token
from sorsync.logs import configure
from sorsync.simulator import render
from sorsync.simulator.generator import generate, write_sortree
from sorsync.simulator.importer import load_snapshot
from sorsync.simulator.server import serve_in_thread
from sorsync.simulator.sor2 import SORENTITY
from sorsync.simulator.store import Store

KEY = "sor/sygehusafdeling/v1"
CPH = ZoneInfo("Europe/Copenhagen")


def request(token: str, sor2: bool = False) -> bytes:
    datatype, register_version = (
        ("sorentity", "<registerVersion>2</registerVersion>") if sor2 else ("sygehusafdeling", "")
    )
    return (
        f'<e:Envelope xmlns:e="{NS_SOAP}"><e:Body><k:ReplicationRequest xmlns:k="{NS_KRS}">'
        f"<register>sor</register><datatype>{datatype}</datatype><version>1</version>"
        f"{register_version}<offset>{token}</offset><maxRecords>2000</maxRecords>"
        "</k:ReplicationRequest></e:Body></e:Envelope>"
    ).encode()


def fill_sor2(store: Store, rows: int, runs: int = 10) -> None:
    """Copies of a generated tree's sorentity rows, each with its own SorId."""
    source = Store()
    buffer = io.BytesIO()
    write_sortree(generate(3000, seed=1), buffer)
    buffer.seek(0)
    load_snapshot(source, buffer)
    templates = [dict(r.values) for r in source.table(SORENTITY)]
    table = store.table(SORENTITY)
    first = datetime(2024, 1, 1, tzinfo=UTC)
    per_run = rows // runs
    for run in range(runs):
        with store.import_run(first + timedelta(days=run)) as modified:
            for i in range(run * per_run, (run + 1) * per_run):
                values = dict(templates[i % len(templates)])
                values["SorId"] = 200_000_000_000_000 + i
                table.insert(values, modified)


def fill(store: Store, rows: int, runs: int = 10) -> None:
    table = store.table(KEY)
    open_to = datetime(2999, 12, 31, tzinfo=CPH)
    starts = [datetime(2000 + n % 20, 1 + n % 12, 1, tzinfo=CPH) for n in range(240)]
    texts = [f"Afdeling for medicin {n}" for n in range(1000)]
    first = datetime(2024, 1, 1, tzinfo=UTC)
    per_run = rows // runs
    for run in range(runs):
        with store.import_run(first + timedelta(days=run)) as modified:
            for i in range(run * per_run, (run + 1) * per_run):
                table.insert(
                    {
                        "sorNummer": 100000000000000 + i,
                        "sygehusSorNummer": 100000000000 + i // 50,
                        "underlagtSygehusSorNummer": 100000000000 + i // 50,
                        "eanLokationsnummer": 5790000000000 + i,
                        "afdelingTypeKode": 3,
                        "afdelingTypeTekst": "Klinisk afdeling",
                        "hovedSpecialeKode": "08",
                        "hovedSpecialeTekst": "Intern medicin",
                        "nummer": f"{1301000 + i % 9000:07d}",
                        "navn": texts[i % 1000],
                        "telefon": "38383838",
                        "vejnavn": "Eksempelvej 12",
                        "postnummer": "2400",
                        "bynavn": "København NV",
                        "validFrom": starts[i % 240],
                        "validTo": open_to,
                    },
                    modified,
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--pages", type=int, default=60)
    parser.add_argument("--sor2", action="store_true", help="page SOR2 sorentity instead")
    args = parser.parse_args()
    configure(level="WARNING")

    store = Store()
    started = time.perf_counter()
    key = SORENTITY if args.sor2 else KEY
    if args.sor2:
        fill_sor2(store, args.rows)
    else:
        fill(store, args.rows)
    fill_s = time.perf_counter() - started
    # as `sorsync simulator` does after loading: the rows live for the whole process, so keep
    # them out of the cyclic GC's full passes (a pass over 2M objects costs ~80 ms)
    gc.collect()
    gc.freeze()
    table = store.table(key)
    rows = table.page((0, 0), args.rows)
    layout = store.shape.layout(key) if table.datatype.is_document else None
    render_ms = []
    for _ in range(5):
        t0 = time.perf_counter()
        render.render_entries(table.datatype, rows[:2000], layout=layout)
        render_ms.append((time.perf_counter() - t0) * 1000)
    handle = serve_in_thread(store)
    timings: list[float] = []
    size = 0
    try:
        with requests.Session() as session:
            headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": SOAP_ACTION}
            # tokens spread over the whole table, then a few consecutive pages from each
            starts = [rows[i] for i in range(0, len(rows) - 20_000, max(1, len(rows) // 10))]
            per_start = max(1, args.pages // max(1, len(starts)))
            for row in starts:
                token = make_token(row.modified, row.pid)
                for _ in range(per_start):
                    body = request(token, args.sor2)
                    t0 = time.perf_counter()
                    response = session.post(handle.url, data=body, headers=headers, timeout=30)
                    content = response.content
                    timings.append((time.perf_counter() - t0) * 1000)
                    assert response.status_code == 200, response.text[:500]
                    size = len(content)
                    last_id = content.rsplit(b"</atom:id>", 1)[0].rsplit(b"/", 1)[1]
                    token = last_id.decode()
    finally:
        handle.stop()
    print(
        json.dumps(
            {
                "datatype": key,
                "rows": len(table),
                "pages": len(timings),
                "page_ms_p50": round(statistics.median(timings), 1),
                "page_ms_p95": round(statistics.quantiles(timings, n=20)[-1], 1),
                "page_ms_max": round(max(timings), 1),
                "page_bytes": size,
                "render_ms": round(min(render_ms), 1),
                "fill_s": round(fill_s, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
