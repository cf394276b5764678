"""Web UI page times: the unit page and the search page, one client, one JSON line per page.

    SORSYNC_TEST_DATABASE_URL=... .venv/bin/python -m bench.ui_bench [--units 100000]
        [--requests 400]

Data: bench.api_bench's synthetic SOR (hospitals → departments → sections, practices, yder,
pharmacies) loaded with COPY into a scratch database; `sorsync serve` (one worker) in its own
process. One keep-alive HTTP/1.1 connection sends the requests one after the other, so each
time is the server's (rendering included) plus a loopback round trip. Pages:

* `unit`         GET /enhed/{id} of random departments and sections: the unit with its
                 ancestors, children and their names, its versions and the SVG timeline
* `search_name`  GET /sog?q=Yder {id} (a name substring that few names share: one hit
                 and its place in the tree)
* `search_name_broad`  GET /sog?q=Afsnit h.d. (a substring of which every section name
                 shares the word: 10 hits among 55 % of the units; the trigrams barely narrow
                 it, so this is `lookup.search`'s own worst case, as it is /v1/units?q=)
* `search_code`  GET /sog?q={SHAK code} (a 4-digit code is also read as a ydernummer and a
                 postcode, so it runs three lookups and one paged postcode search)
* `api_sor`, `api_units_name`  the JSON API's /v1/sor/{id} and /v1/units?q= for the same
                 units and names: the lookups' own cost, for comparison
"""

from __future__ import annotations

import argparse
import http.client
import random
import statistics
import time
from urllib.parse import urlsplit

from sqlalchemy import text

from bench.api_bench import api_server, load
from bench.common import emit, scratch_database
from sorsync.db.engine import make_engine

TARGET_P99_MS = 50.0


def measure(base: str, paths: list[str], warmup: int = 30) -> list[float]:
    """Milliseconds of each GET of `paths` on one connection (after `warmup` requests)."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    times: list[float] = []
    try:
        for i, path in enumerate(paths[:warmup] + paths):
            start = time.perf_counter()
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read()
            elapsed = (time.perf_counter() - start) * 1000
            if response.status != 200 or not (b"<title>" in body or path.startswith("/v1/")):
                raise SystemExit(f"{path}: HTTP {response.status}")
            if i >= warmup:
                times.append(elapsed)
    finally:
        conn.close()
    return times


def top_departments(url: str) -> list[int]:
    engine = make_engine(url, pool=False)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT DISTINCT sor_nummer FROM krs.sor_sygehusafdeling_v1"
                    " WHERE overafdeling_sor_nummer IS NULL"
                )
            ).scalars()
            return [int(r) for r in rows]
    finally:
        engine.dispose()


def yder_ids(url: str) -> list[int]:
    engine = make_engine(url, pool=False)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT sor_nummer FROM krs.sor_yder_v1")).scalars()
            return [int(r) for r in rows]
    finally:
        engine.dispose()


def quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=400, help="per page")
    args = parser.parse_args()
    rng = random.Random(19)
    with scratch_database() as url:
        started = time.perf_counter()
        data = load(url, args.units)
        load_s = time.perf_counter() - started
        departments, yder = top_departments(url), yder_ids(url)
        shak_codes = [c for c in data.shak if len(c) == 4]
        n_hospitals = len(shak_codes)
        half = args.requests // 2
        pages = {
            # Sections (two ancestors, no children) and departments (ten children each).
            "unit": [f"/enhed/{rng.choice(data.sections)}" for _ in range(half)]
            + [f"/enhed/{rng.choice(departments)}" for _ in range(args.requests - half)],
            "search_name": [f"/sog?q=Yder+{rng.choice(yder)}" for _ in range(args.requests)],
            "search_name_broad": [
                f"/sog?q=Afsnit+{rng.randrange(n_hospitals)}.{rng.randrange(10)}."
                for _ in range(args.requests)
            ],
            "search_code": [f"/sog?q={rng.choice(shak_codes)}" for _ in range(args.requests)],
        }
        rng.shuffle(pages["unit"])
        # The JSON API's answers to the same questions, for comparison: what the database and
        # the lookup cost without the page around them.
        pages["api_sor"] = [p.replace("/enhed/", "/v1/sor/") for p in pages["unit"]]
        pages["api_units_name"] = [
            p.replace("/sog?", "/v1/units?limit=50&") for p in pages["search_name"]
        ]
        with api_server(url, workers=1) as (base, _pid):
            for page, paths in pages.items():
                times = measure(base, paths)
                p99 = quantile(times, 0.99)
                emit(
                    {
                        "bench": "ui",
                        "page": page,
                        "units": args.units,
                        "requests": len(times),
                        "p50_ms": round(quantile(times, 0.50), 2),
                        "p99_ms": round(p99, 2),
                        "max_ms": round(max(times), 2),
                        "target_p99_ms": TARGET_P99_MS,
                        "ok": p99 <= TARGET_P99_MS,
                        "load_s": round(load_s, 1),
                    }
                )


if __name__ == "__main__":
    main()
