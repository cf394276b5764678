"""The nightly full under load: two schedulers, `sorsync serve --workers 2` on the standby, and
lookups from several clients while the full sync swaps the replica (docs/deployment.md).

Two `sorsync scheduler` processes share the primary (multi-host URL, read-write); their full
is due at the next minute (SORSYNC_FULL_CRON). One runs it, the other waits for the lock and
then skips it. Meanwhile a bounded load of lookups (SHAK, SOR ids, a page of units) runs
against the API on the standby, which replays the swap. Every answer is checked:

- no 5xx and no failed connection;
- its body is wholly the old replica's or wholly the new one's (never a half-built replica);
- its ETag never claims the new data version for the old body (a client would keep the old
  answer until the next sync). An ETag may name either scheduler's first delta with the old
  body: the second delta can end just before the old answers are collected, inside the version
  cache's second, and it changed nothing. The other way round, the new body under the old
  ETag, happens for up to `version_ttl` (1 s) after the swap, by design (api/database.py):
  the client revalidates and gets the new ETag with the same body. Those answers are counted.
"""

from __future__ import annotations

import re
import signal
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx2
import pytest
from sqlalchemy import text

from tests.fixtures.serve import serve_process
from tests.reliability.harness import sorsync_argv
from tests.replication.bed import Bed, probes, replication_bed, wait_for

UNITS = 1500
SEED = 20261204
CLIENTS = 4
PAUSE = 0.01  # seconds each client waits between requests: a bounded load
LOAD_CAP = 120.0  # seconds the load may run at most
TIMEZONE = ZoneInfo("Europe/Copenhagen")  # the scheduler's (sorsync/scheduler/process.py)


@dataclass(frozen=True, slots=True)
class Answer:
    at: float  # time.time() when it arrived
    seconds: float
    path: str
    status: int  # 0: no answer (connection failed)
    etag: str | None
    body: bytes


@dataclass
class Load:
    base: str
    paths: list[str]
    stop: threading.Event = field(default_factory=threading.Event)
    answers: list[Answer] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def client(self, offset: int) -> None:
        mine: list[Answer] = []
        with httpx2.Client(base_url=self.base, timeout=10) as client:
            i = offset
            while not self.stop.is_set():
                path = self.paths[i % len(self.paths)]
                started = time.perf_counter()
                try:
                    r = client.get(path)
                    status, etag, body = r.status_code, r.headers.get("etag"), r.content
                except httpx2.TransportError:
                    status, etag, body = 0, None, b""
                mine.append(
                    Answer(time.time(), time.perf_counter() - started, path, status, etag, body)
                )
                i += 1
                time.sleep(PAUSE)
        with self._lock:
            self.answers += mine


def snapshot(base: str, paths: list[str]) -> dict[str, tuple[str | None, bytes]]:
    with httpx2.Client(base_url=base, timeout=10) as client:
        out = {}
        for p in paths:
            r = client.get(p)
            assert r.status_code in (200, 404), (p, r.status_code)
            out[p] = (r.headers.get("etag"), r.content)
    return out


class Scheduler:
    """`sorsync scheduler` as a process; its log lines collected."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            sorsync_argv("scheduler"),
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def said(self, pattern: str) -> bool:
        return any(re.search(pattern, line) for line in self.lines)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(timeout=5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


def _next_minute(margin: float) -> datetime:
    """The next minute boundary at least `margin` seconds away (in the scheduler's zone)."""
    now = datetime.now(TIMEZONE)
    boundary = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    if (boundary - now).total_seconds() < margin:
        boundary += timedelta(minutes=1)
    return boundary


def _percentile(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


@pytest.fixture
def bed() -> Iterator[Bed]:
    with replication_bed(UNITS, SEED) as bed:
        yield bed


def test_load_through_the_nightly_full(bed: Bed, tmp_path: Path) -> None:
    topo = bed.topology
    primary = bed.engine(topo.primary.url)
    paths = [*probes(primary, 60), "/v1/units?kind=sygehusafdeling&limit=200"]
    api_url = topo.multi_host_url("prefer-standby")
    due = _next_minute(margin=12)
    cron = f"{due.minute} {due.hour} * * *"
    env = bed.env(
        bed.writer_url,
        SORSYNC_FULL_CRON=cron,
        SORSYNC_DELTA_INTERVAL="1440",
        SORSYNC_METRICS_PORT="0",
        SORSYNC_KRS_PAGE_SIZE="50",
        SORSYNC_LOG_LEVEL="info",
    )
    with serve_process(api_url, "--workers", "2", env=bed.env(api_url)) as api:
        schedulers = [Scheduler(env, tmp_path) for _ in range(2)]
        load = Load(api, paths)
        clients = [
            threading.Thread(target=load.client, args=(i,), daemon=True) for i in range(CLIENTS)
        ]
        try:
            # Each scheduler's first delta at start (run, or skipped while the other runs it).
            wait_for(
                lambda: all(s.said("scheduled sync ok|sync skipped") for s in schedulers),
                30,
                "the schedulers' first deltas",
            )
            # The day's import at the source; only the full brings it in.
            bed.source.evolve(200, SEED + 1)
            bed.caught_up()
            old = snapshot(api, paths)
            assert (due - datetime.now(TIMEZONE)).total_seconds() > 1, "too slow to set up"
            time.sleep(max(0.0, (due - datetime.now(TIMEZONE)).total_seconds() - 2))
            load_started = time.time()
            for c in clients:
                c.start()

            def full_done() -> bool:
                with primary.connect() as conn:
                    return bool(
                        conn.execute(
                            text(
                                "SELECT EXISTS (SELECT 1 FROM krs.sync_run"
                                " WHERE kind = 'full' AND status <> 'running'"
                                " AND started_at >= to_timestamp(:t))"
                            ),
                            {"t": load_started},
                        ).scalar_one()
                    )

            wait_for(full_done, 60, "the scheduled full sync")
            bed.caught_up()
            time.sleep(2.5)  # past the API's version cache (1 s), still under load
        finally:
            load.stop.set()
            for c in clients:
                if c.is_alive():
                    c.join(timeout=15)
            for s in schedulers:
                s.stop()
        new = snapshot(api, paths)

    with primary.connect() as conn:
        fulls = conn.execute(
            text(
                "SELECT id, status, extract(epoch FROM started_at),"
                " extract(epoch FROM finished_at), records FROM krs.sync_run"
                " WHERE kind = 'full' AND started_at >= to_timestamp(:t)"
            ),
            {"t": load_started - 5},
        ).all()
    assert len(fulls) == 1, f"two schedulers, one full: {fulls}"
    run_id, status, started, finished, records = fulls[0]
    assert status == "ok"
    assert any(s.said("full sync waits|sync skipped") for s in schedulers)
    verdict = bed.verdict(topo.primary.url)
    assert verdict.ok, verdict.explain()

    new_tag = f'"{run_id}-'
    assert all(etag is None or etag.startswith(new_tag) for etag, _ in new.values())
    changed = [p for p in paths if old[p][1] != new[p][1]]
    assert len(changed) >= 5, "the evolved source changed too few of the probes"

    errors, mixed, lagging, olds, news = [], [], [], 0, 0
    for a in load.answers:
        if a.status >= 500 or a.status == 0:
            errors.append(a)
            continue
        old_body, new_body = old[a.path][1], new[a.path][1]
        # The run its ETag names (None: no ETag, a 404). Runs before the full are the
        # schedulers' first deltas, which the evolved source does not reach: the old data.
        run = None if a.etag is None else int(a.etag.strip('"').partition("-")[0])
        if a.body == old_body and (run is None or run < run_id):
            olds += 1
        elif a.body == new_body and (run is None or run == run_id):
            news += 1
        elif a.body == new_body and run is not None and run < run_id:
            lagging.append(a)  # the version cache: harmless, bounded
        else:
            mixed.append(a)
    assert not errors, [(e.path, e.status, e.body[:200]) for e in errors[:5]]
    assert not mixed, [(m.path, m.etag, m.body[:200]) for m in mixed[:5]]
    assert olds > 0, "no answer came from before the swap"
    assert news > 0, "no answer came from after the swap"
    if lagging:
        assert max(a.at for a in lagging) - float(finished) < 3

    window = [a for a in load.answers if float(started) <= a.at <= float(finished) + 2]
    latencies = sorted(a.seconds for a in load.answers)
    during = sorted(a.seconds for a in window)
    bed.figures = {
        "clients": CLIENTS,
        "api_workers": 2,
        "load_seconds": round(max(a.at for a in load.answers) - load_started, 1),
        "requests": len(load.answers),
        "errors_5xx_or_connection": len(errors),
        "mixed_answers": len(mixed),
        "old_answers": olds,
        "new_answers": news,
        "new_body_old_etag_answers": len(lagging),
        "p50_ms": round(1000 * _percentile(latencies, 50), 1),
        "p99_ms": round(1000 * _percentile(latencies, 99), 1),
        "full_seconds": round(float(finished) - float(started), 2),
        "full_records": int(records),
        "swap_window_requests": len(window),
        "swap_window_p99_ms": round(1000 * _percentile(during, 99), 1),
        "swap_window_max_ms": round(1000 * max(during, default=0.0), 1),
        "probes_changed": f"{len(changed)}/{len(paths)}",
    }
    bed.report("swap-load")
