"""Run every benchmark and print one JSON line per measurement: {"bench": ..., figures...}.

    SORSYNC_TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        .venv/bin/python -m bench.run_all [--quick] [--only sync|api]

Sync (datatype sor/sygehusafdeling/v1, the widest; the KRS simulator in its own process, every
sync in a fresh child process so CPU seconds and peak RSS are the sync's own):

* `sync_full`       first full sync of 100 000 and 1 000 000 records (`--quick`: 100 000 only)
* `sync_full_replay` the same first full against the same pages recorded beforehand and replayed
                    by a process that only sends them: the source costs this machine nothing,
                    as NSP does in production
* `sync_delta`      1 000 and 50 000 rows changed at the source after a full, then a delta
* `naive`           baseline (a): zeep + lxml per entry + one ORM merge per record, commit per
                    page, on the first 20 000 records; per-record figures scale to any size
* `limit`           baseline (b): lxml parse of the same pages (fetched beforehand) + binary
                    COPY of the same rows into an unindexed table, each timed alone, summed
* `delta_visible`   1 000 changes at the source → delta sync → seconds until the API shows one
* `compare`         the ratios the targets are stated in

API (`--only api`, or after the sync part): bench/api_suite.py — wrk against `sorsync serve` and
a bare FastAPI constant endpoint; single SHAK lookup, SOR lookup with ancestors, resolve of
10 000 codes, at 1, 16 and 64 clients.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import subprocess
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

from bench import sync_benches
from bench.common import KEY, Replay, Simulator, emit, in_child, scratch_database, server_url

NAIVE_RECORDS = 20_000


def _visible_child(krs_url: str, db_url: str, conn: Connection) -> None:
    """A delta sync that tells the parent (wall clock) when it starts and how it ended."""
    from sorsync.datatypes import DATATYPES
    from sorsync.db.engine import make_engine
    from sorsync.krs.client import KrsClient
    from sorsync.logs import configure
    from sorsync.sync import sync

    configure(level="WARNING")
    engine = make_engine(db_url)
    with KrsClient(krs_url, timeout=60) as client:
        conn.send(time.time())
        started = time.perf_counter()
        result = sync(engine, client, [DATATYPES[KEY]], kind="delta")
        conn.send((result.ok, result.records, time.perf_counter() - started))
    engine.dispose()


def delta_visible(sim: Simulator, db_url: str, changes: int) -> dict[str, Any]:
    import requests

    from bench.api_bench import api_server

    with api_server(db_url, 1) as (base, _pid), requests.Session() as http:
        changed = sim.update(changes)
        probe = f"{base}/v1/sor/{changed[-1]}"  # the last one in feed order: on the last page
        before = http.get(probe, timeout=10)
        if before.status_code != 200:
            raise RuntimeError(f"the API answered {before.status_code} for {probe}")
        revision = _revision(before.text)
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_visible_child, args=(sim.url, db_url, child))
        proc.start()
        started = parent.recv()
        visible = None
        polls = 0
        while time.time() - started < 30:
            polls += 1
            answer = http.get(probe, timeout=10)
            if answer.status_code == 200 and _revision(answer.text) > revision:
                visible = time.time() - started
                break
            time.sleep(0.01)
        ok, records, sync_seconds = parent.recv()
        proc.join(timeout=30)
    return {
        "changes": changes,
        "records": records,
        "visible_s": None if visible is None else round(visible, 3),
        "sync_s": round(sync_seconds, 3),
        "polls": polls,
        "ok": ok,
    }


def _revision(text: str) -> int:
    marker = "(rev "
    at = text.find(marker)
    if at < 0:
        return 0
    end = text.find(")", at)
    return int(text[at + len(marker) : end])


def sync_suite(sizes: list[int], deltas: list[int]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for records in sizes:
        with Simulator(records) as sim, scratch_database() as db:
            full = in_child(sync_benches.sorsync_sync, sim.url, db, "full")
            emit({"bench": "sync_full", "simulator_fill_s": round(sim.fill_seconds, 1), **full})
            out[f"sync_full_{records}"] = full
            with Replay(sim.url) as replay, scratch_database() as replay_db:
                replayed = in_child(sync_benches.sorsync_sync, replay.url, replay_db, "full")
            if replayed["records"] != full["records"]:
                raise RuntimeError(f"the replay gave {replayed['records']} records, not {records}")
            emit({"bench": "sync_full_replay", **replayed})
            out[f"sync_full_replay_{records}"] = replayed
            if records != sizes[0]:
                continue
            lim = in_child(sync_benches.limit, sim.url, db)
            emit({"bench": "limit", **lim})
            out["limit"] = lim
            for changes in deltas:
                sim.update(changes)
                delta = in_child(sync_benches.sorsync_sync, sim.url, db, "delta")
                emit({"bench": "sync_delta", "changes": changes, **delta})
                out[f"sync_delta_{changes}"] = delta
            vis = delta_visible(sim, db, 1000)
            emit({"bench": "delta_visible", **vis})
            out["delta_visible"] = vis
            with scratch_database() as naive_db:
                naive = in_child(sync_benches.naive, sim.url, naive_db, NAIVE_RECORDS)
            emit({"bench": "naive", "note": "per-record figures; scale linearly", **naive})
            out["naive"] = naive
    return out


def compare(figures: dict[str, dict[str, Any]], sizes: list[int]) -> None:
    small = figures[f"sync_full_{sizes[0]}"]
    big = figures.get(f"sync_full_{sizes[-1]}", small)
    replay_small = figures[f"sync_full_replay_{sizes[0]}"]
    replay_big = figures.get(f"sync_full_replay_{sizes[-1]}", replay_small)
    naive, lim = figures["naive"], figures["limit"]

    def per_record_us(f: dict[str, Any]) -> float:
        # per-record wall time, so that the naive slice compares with the full run
        return float(f["seconds"]) / int(f["records"]) * 1e6

    ours_us, naive_us, limit_us = map(per_record_us, (small, naive, lim))
    emit(
        {
            "bench": "compare",
            "cpu_s_per_100k": small["cpu_s_per_100k"],
            "cpu_target_ratio": round(small["cpu_s_per_100k"] / 2.0, 2),  # ≤ 1 meets it
            "records_per_s_at_largest": big["records_per_s"],
            "largest": big["records"],
            "throughput_target_ratio": round(big["records_per_s"] / 50_000, 2),  # ≥ 1 meets it
            "speedup_vs_naive": round(naive_us / ours_us, 1),  # ≥ 10 meets it
            "ratio_to_limit": round(ours_us / limit_us, 2),  # ≤ 2 meets it
            "records_per_s_at_largest_replay": replay_big["records_per_s"],
            "ratio_to_limit_replay": round(per_record_us(replay_small) / limit_us, 2),
            "peak_rss_mb_max": max(
                f["peak_rss_mb"] for k, f in figures.items() if k.startswith("sync_")
            ),
            "delta_visible_s": figures["delta_visible"]["visible_s"],  # ≤ 2 meets it
        }
    )


def api_suite(quick: bool) -> None:
    # Prints its own JSON lines (bench = api*); its own process, like every measurement here.
    cmd = [sys.executable, "-m", "bench.api_suite"]
    if quick:
        cmd += ["--seconds", "3"]
    subprocess.run(cmd, check=True, env=os.environ)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the 1 000 000-record full")
    parser.add_argument("--only", choices=("sync", "api"))
    args = parser.parse_args()
    server_url()  # fail early without a database server
    sizes = [100_000] if args.quick else [100_000, 1_000_000]
    if args.only != "api":
        figures = sync_suite(sizes, [1_000, 50_000])
        compare(figures, sizes)
    if args.only != "sync":
        api_suite(args.quick)


if __name__ == "__main__":
    main()
