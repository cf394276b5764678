"""API benchmark: lookups against a replica of 100 000 units, printed as JSON lines.

    SORSYNC_TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        .venv/bin/python -m bench.api_bench [--units 100000] [--clients 16] [--workers 1]

Creates a scratch database on that server (dropped afterwards), loads synthetic units with
COPY, starts `sorsync serve` on an ephemeral loopback port in its own process, and drives it
from another process with an asyncio httpx2 client (keep-alive, `--clients` concurrent
connections, bounded by request count and time). Scenarios:

* `constant`  GET /livez: no database, the framework's ceiling on this machine
* `shak`      GET /v1/shak/{code}: one SHAK lookup (random existing codes)
* `sor`       GET /v1/sor/{id}: a section with its ancestors and children
* `resolve`   POST /v1/shak/resolve with 10 000 codes, one client, sequential

Besides throughput and latency each line reports CPU time per request of the server process(es),
the load generator and the PostgreSQL backends serving the API: on a small machine the three
compete for the same cores, and CPU per request is the figure that carries over to a server
with cores of its own. `--client raw` swaps httpx2 for a minimal asyncio HTTP/1.1 client
(keep-alive GETs only), which costs far less CPU per request, to show the server's own limit.

Targets (issue): ≥ 2 000 lookups/s with p99 ≤ 10 ms at 16 clients; 10 000 codes in ≤ 250 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from multiprocessing import get_context
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, make_url, text

from sorsync.db import migrate
from sorsync.db.engine import make_engine
from sorsync.db.models import REPLICA_TABLES
from sorsync.identifiers import make_gln, make_sor_id

CPH = ZoneInfo("Europe/Copenhagen")


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


# --- data -----------------------------------------------------------------------------------


class Data:
    """Synthetic SOR in the shape of the real one: hospitals with departments and sections
    (SHAK 4/6/7 characters), practices with yder units, pharmacies; ~10 % of the hospital
    units carry a closed earlier version."""

    def __init__(self, units: int, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.units = units
        self.seq = 0
        self.pid = 0
        self.rows: dict[str, list[tuple[Any, ...]]] = {key: [] for key in REPLICA_TABLES}
        self.shak: list[str] = []
        self.sections: list[int] = []

    def _ids(self) -> tuple[int, int]:
        self.seq += 1
        self.pid += 1
        return int(make_sor_id(self.seq)), self.pid

    def _row(self, key: str, values: dict[str, Any]) -> None:
        table = REPLICA_TABLES[key]
        modified = dt.datetime(2026, 11, 1, 2, tzinfo=dt.UTC)
        base = {"modified_at": modified, "token": f"{1793500000:010d}{values['pid']:010d}"}
        full = base | values
        self.rows[key].append(tuple(full.get(c.name) for c in table.c))

    def build(self) -> Data:
        start = dt.datetime(2015, 1, 1, tzinfo=CPH)
        hospital_units = int(self.units * 0.55)
        n_hospitals = max(1, hospital_units // 110)
        addr = {"vejnavn": "Testvej 1", "postnummer": "8000", "bynavn": "Aarhus"}
        for h in range(n_hospitals):
            hid, pid = self._ids()
            code = f"{1000 + h:04d}"
            self.shak.append(code)
            self._row(
                "sor/sygehus/v1",
                {"pid": pid, "sor_nummer": hid, "nummer": code, "navn": f"Hospital {h}",
                 "ean_lokationsnummer": int(make_gln(f"5790{h:08d}")), "valid_from": start}
                | addr,
            )  # fmt: skip
            for d in range(10):
                did, _ = self._ids()
                dcode = f"{code}{d:02d}"
                self.shak.append(dcode)
                self._afdeling(did, hid, None, dcode, f"Afdeling {h}.{d}", start, addr)
                for s in range(10):
                    sid, _ = self._ids()
                    scode = f"{dcode}{s}"
                    self.shak.append(scode)
                    self.sections.append(sid)
                    self._afdeling(sid, hid, did, scode, f"Afsnit {h}.{d}.{s}", start, addr)
        while self.seq < self.units * 0.97:
            prid, pid = self._ids()
            self._row(
                "sor/praksis/v1",
                {"pid": pid, "sor_nummer": prid, "navn": f"Praksis {prid}", "valid_from": start},
            )
            for _ in range(2):
                yid, pid = self._ids()
                self._row(
                    "sor/yder/v1",
                    {"pid": pid, "sor_nummer": yid, "praksis_sor_nummer": prid,
                     "nummer": str(self.seq), "navn": f"Yder {yid}", "valid_from": start}
                    | addr,
                )  # fmt: skip
        while self.seq < self.units:
            aid, pid = self._ids()
            self._row(
                "sor/apotek/v1",
                {"pid": pid, "sor_nummer": aid, "navn": f"Apotek {aid}", "valid_from": start}
                | addr,
            )
        return self

    def _afdeling(
        self,
        sor: int,
        hospital: int,
        over: int | None,
        code: str,
        name: str,
        start: dt.datetime,
        addr: dict[str, str],
    ) -> None:
        values = {
            "sor_nummer": sor,
            "sygehus_sor_nummer": None if over else hospital,
            "overafdeling_sor_nummer": over,
            "underlagt_sygehus_sor_nummer": hospital,
            "nummer": code,
            "navn": name,
        } | addr
        if self.rng.random() < 0.1:  # an older, closed version
            self.pid += 1
            changed = start + dt.timedelta(days=self.rng.randrange(100, 3000))
            old = values | {"navn": name + " (gl.)", "valid_from": start, "valid_to": changed}
            self._row("sor/sygehusafdeling/v1", {"pid": self.pid} | old)
            start = changed
        self.pid += 1
        self._row("sor/sygehusafdeling/v1", {"pid": self.pid, "valid_from": start} | values)

    def copy_into(self, engine: Engine) -> None:
        with engine.begin() as conn:
            cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            for key, rows in self.rows.items():
                table = REPLICA_TABLES[key]
                cols = ", ".join(c.name for c in table.c)
                with cur.copy(f"COPY krs.{table.name} ({cols}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            for table in REPLICA_TABLES.values():
                conn.execute(text(f"ANALYZE krs.{table.name}"))
            # What a sync leaves behind: the finished run the API's data version comes from.
            conn.execute(
                text(
                    "INSERT INTO krs.sync_run (kind, started_at, finished_at, status, datatypes)"
                    " VALUES ('full', now(), now(), 'ok', :keys)"
                ),
                {"keys": list(self.rows)},
            )


# --- server ---------------------------------------------------------------------------------


@contextmanager
def scratch_database() -> Iterator[str]:
    server = os.environ.get("SORSYNC_TEST_DATABASE_URL") or os.environ.get("SORSYNC_DATABASE_URL")
    if not server:
        raise SystemExit("set SORSYNC_TEST_DATABASE_URL to a PostgreSQL server URL")
    server = server.replace("postgresql://", "postgresql+psycopg://", 1)
    name = f"sorsync_bench_{uuid.uuid4().hex[:8]}"
    admin = make_engine(server, pool=False)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(server).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def process_cpu_seconds(pids: list[int]) -> float:
    """utime + stime of the given processes (Linux /proc)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def process_tree(root: int) -> list[int]:
    """`root` and its descendants (uvicorn workers)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, IndexError):
                continue
    tree, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, ppid in parents.items() if ppid in frontier]
        tree += frontier
    return tree


def api_backends(url: str) -> list[int]:
    """PIDs of the PostgreSQL backends the API holds open (same machine only)."""
    engine = make_engine(url, pool=False)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT pid FROM pg_stat_activity "
                    "WHERE application_name = 'sorsync-api' AND datname = current_database()"
                )
            )
            return [int(r[0]) for r in rows]
    finally:
        engine.dispose()


@contextmanager
def api_server(
    url: str, workers: int, env: dict[str, str] | None = None
) -> Iterator[tuple[str, int]]:
    env = {**os.environ, "SORSYNC_DATABASE_URL": url, **(env or {})}
    cmd = [sys.executable, "-m", "sorsync", "serve", "--host", "127.0.0.1", "--port", "0"]
    proc = subprocess.Popen(
        [*cmd, "--workers", str(workers)],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
    )
    assert proc.stderr is not None
    try:
        base = None
        while base is None:
            line = proc.stderr.readline().decode()
            if not line and proc.poll() is not None:
                raise SystemExit("sorsync serve did not start")
            if m := re.search(r"running on (http://127\.0\.0\.1:\d+)", line):
                base = m.group(1)
        threading.Thread(target=proc.stderr.read, daemon=True).start()
        import httpx2

        for _ in range(200):
            try:
                if httpx2.get(base + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx2.TransportError:
                time.sleep(0.05)
        yield base, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=20)


# --- load generator (runs in its own process) -----------------------------------------------


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class RawClient:
    """One keep-alive HTTP/1.1 connection doing GETs: just enough protocol for this server
    (Content-Length bodies, no chunking), at a fraction of a full client's CPU cost."""

    def __init__(self, base: str) -> None:
        host, port = base.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await self.reader.readexactly(length)
        return status

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()


def run_load(
    base: str,
    paths: list[str],
    clients: int,
    max_requests: int,
    max_seconds: float,
    body: bytes | None = None,
    kind: str = "httpx",
) -> dict[str, Any]:
    """Drive `clients` concurrent keep-alive connections through `paths` (round robin) until
    `max_requests` are done or `max_seconds` pass; latency per request in ms."""
    import httpx2

    async def main() -> dict[str, Any]:
        latencies: list[float] = []
        statuses: dict[int, int] = {}
        counter = iter(range(max_requests))
        deadline = time.perf_counter() + max_seconds
        limits = httpx2.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx2.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
            raws = [RawClient(base) for _ in range(clients)]

            async def request(n: int, path: str) -> int:
                if body is not None:
                    headers = {"content-type": "application/json"}
                    return (await client.post(path, content=body, headers=headers)).status_code
                if kind == "raw":
                    return await raws[n].get(path)
                return (await client.get(path)).status_code

            async def worker(n: int) -> None:
                for i in counter:
                    if time.perf_counter() > deadline:
                        return
                    t0 = time.perf_counter()
                    status = await request(n, paths[i % len(paths)])
                    latencies.append((time.perf_counter() - t0) * 1000)
                    statuses[status] = statuses.get(status, 0) + 1

            # warm up connections (and server-side prepared statements), not measured
            await asyncio.gather(*(request(n, paths[n % len(paths)]) for n in range(clients)))
            t_start, cpu_start = time.perf_counter(), time.process_time()
            await asyncio.gather(*(worker(n) for n in range(clients)))
            elapsed = time.perf_counter() - t_start
            cpu = time.process_time() - cpu_start
            for raw in raws:
                await raw.close()
        return {
            "requests": len(latencies),
            "seconds": round(elapsed, 3),
            "rps": round(len(latencies) / elapsed, 1),
            "p50_ms": round(_percentile(latencies, 0.50), 2),
            "p99_ms": round(_percentile(latencies, 0.99), 2),
            "max_ms": round(max(latencies), 2),
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "client_cpu_us_per_req": round(cpu / len(latencies) * 1e6),
        }

    return asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--requests", type=int, default=20_000, help="per scenario, at most")
    parser.add_argument("--seconds", type=float, default=10.0, help="per scenario, at most")
    parser.add_argument("--client", choices=("httpx", "raw"), default="httpx")
    args = parser.parse_args()

    emit({"bench": "api", "units": args.units, "clients": args.clients, "workers": args.workers,
          "client": args.client, "cpus": os.cpu_count()})  # fmt: skip
    with scratch_database() as url:
        t0 = time.perf_counter()
        migrate.upgrade(url)
        data = Data(args.units).build()
        engine = make_engine(url, pool=False)
        try:
            data.copy_into(engine)
        finally:
            engine.dispose()
        rows = sum(len(r) for r in data.rows.values())
        emit({"scenario": "load", "units": data.seq, "rows": rows,
              "seconds": round(time.perf_counter() - t0, 2)})  # fmt: skip

        rng = random.Random(1)
        shak_paths = [f"/v1/shak/{c}" for c in rng.sample(data.shak, min(5000, len(data.shak)))]
        sor_paths = [
            f"/v1/sor/{s}" for s in rng.sample(data.sections, min(5000, len(data.sections)))
        ]
        codes = rng.sample(data.shak, min(9_000, len(data.shak)))
        codes += [f"Z{i:05d}" for i in range(10_000 - len(codes))]  # not found
        resolve_body = json.dumps({"codes": codes}).encode()

        pool = ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"))
        with api_server(url, args.workers) as (base, server_pid), pool:
            scenarios: list[tuple[str, list[str], int, int, float, bytes | None]] = [
                ("constant", ["/livez"], args.clients, args.requests, args.seconds, None),
                ("shak", shak_paths, args.clients, args.requests, args.seconds, None),
                ("sor", sor_paths, args.clients, args.requests, args.seconds, None),
                ("resolve", ["/v1/shak/resolve"], 1, 30, 60.0, resolve_body),
            ]
            for name, paths, clients, count, seconds, body in scenarios:
                server = process_tree(server_pid)
                server_cpu = process_cpu_seconds(server)
                backends = api_backends(url)
                db_cpu = process_cpu_seconds(backends)
                result = pool.submit(
                    run_load, base, paths, clients, count, seconds, body, args.client
                ).result()
                n = result["requests"]
                server_us = (process_cpu_seconds(server) - server_cpu) / n * 1e6
                # backends opened during the run were not in the first sample: count them whole
                db_us = (process_cpu_seconds(api_backends(url)) - db_cpu) / n * 1e6
                extra = {"codes": len(codes)} if body is not None else {}
                emit({"scenario": name, "clients": clients, **extra, **result,
                      "server_cpu_us_per_req": round(server_us),
                      "db_cpu_us_per_req": round(db_us)})  # fmt: skip


if __name__ == "__main__":
    main()
