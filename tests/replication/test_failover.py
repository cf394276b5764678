"""Failover in the middle of a sync: the primary is killed, the standby promoted, and the
scheduler carries on by itself on the multi-host URL (docs/deployment.md).

The scheduler's own code runs the sync (`sorsync.scheduler.sync_job` with a `ServiceRunner`, as
`sorsync scheduler` does, only with short retry waits) on
`host=primary,standby&target_session_attrs=read-write`. While it runs, `sorsync serve` on a
multi-host URL answers lookups in a loop. The primary is killed (`pg_ctl stop -m immediate`)
after a few committed pages, the standby is promoted a moment later, and then:

- the scheduler reconnects to the promoted server without help and its run ends `ok`;
- a delta resumed from the last token that survived on the standby (it fetched exactly the
  records after it), a full started over and swapped;
- the replica equals the source in every row, column and token (the reliability oracle);
- the API kept answering; its errors during the switch are counted (and bounded).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import httpx2
import pytest
from sqlalchemy import text

from sorsync.scheduler import Outcome, RetryPolicy, ServiceRunner, sync_job
from tests.fixtures.serve import serve_process
from tests.reliability import oracle
from tests.replication.bed import KEYS, Bed, probes, replication_bed, wait_for

UNITS = 800
SEED = 20261203
PAGE_DELAY = 0.02  # seconds the simulator waits before each page: a run of a few seconds
KILL_AFTER_PAGES = 4
DETECTION = 0.5  # seconds between the crash and the promotion (a watchdog's reaction)
POLICY = RetryPolicy(attempts=12, first_wait=0.25, max_wait=1.0)


@dataclass
class ApiLoad:
    """Lookups in a loop against the API; every answer's status and time recorded."""

    base: str
    paths: list[str]
    stop: threading.Event = field(default_factory=threading.Event)
    answers: list[tuple[float, int]] = field(default_factory=list)  # (monotonic, status; 0 = none)

    def run(self) -> None:
        with httpx2.Client(base_url=self.base, timeout=10) as client:
            i = 0
            while not self.stop.is_set():
                try:
                    status = client.get(self.paths[i % len(self.paths)]).status_code
                except httpx2.TransportError:
                    status = 0
                self.answers.append((time.monotonic(), status))
                i += 1
                time.sleep(0.005)

    def errors(self) -> list[tuple[float, int]]:
        return [(t, s) for t, s in self.answers if s not in (200, 404)]

    def longest_gap(self) -> float:
        """The longest time without a good answer."""
        good = [t for t, s in self.answers if s in (200, 404)]
        return max((b - a for a, b in itertools.pairwise(good)), default=0.0)


def _newest_run(bed: Bed, url: str) -> tuple[int, int] | None:
    with bed.engine(url).connect() as conn:
        row = conn.execute(
            text("SELECT id, pages FROM krs.sync_run ORDER BY id DESC LIMIT 1")
        ).first()
    return None if row is None else (int(row[0]), int(row[1]))


@dataclass
class Failover:
    outcome: Outcome
    surviving_tokens: dict[str, str | None]
    kill_at: float  # time.time()
    promote_seconds: float
    resumed_after: float  # seconds from the kill to the first run started on the new primary
    final_run: tuple[int, str, int]  # id, status, records of the newest run


def _fail_over(bed: Bed, kind: Literal["full", "delta"]) -> Failover:
    topo = bed.topology
    primary_url, standby_url = topo.primary.url, topo.standby.url
    before = _newest_run(bed, primary_url)
    assert before is not None
    stop = threading.Event()
    runner = ServiceRunner(bed.engine(bed.writer_url), bed.settings(), stop, bed.source.url)
    outcome: list[Outcome] = []
    job = threading.Thread(
        target=lambda: outcome.append(sync_job(kind, runner, POLICY, stop)), daemon=True
    )
    bed.source.handle.faults.random(1.0, SEED, kinds=[{"kind": "delay", "seconds": PAGE_DELAY}])
    try:
        job.start()

        def pages_committed() -> bool:
            run = _newest_run(bed, primary_url)
            return run is not None and run[0] > before[0] and run[1] >= KILL_AFTER_PAGES

        wait_for(pages_committed, 30, f"the {kind} to commit {KILL_AFTER_PAGES} pages")
        kill_at = time.time()
        topo.primary.kill()
        assert job.is_alive(), "the sync ended before the primary was killed"
        # What the promoted server will hold: the standby's copy at the moment of the crash.
        surviving = oracle.tokens(bed.engine(standby_url))
        time.sleep(DETECTION)
        started = time.monotonic()
        topo.standby.promote()
        promote_seconds = time.monotonic() - started
        job.join(timeout=90)
        assert not job.is_alive(), "the scheduler did not finish after the failover"
    finally:
        stop.set()
        bed.source.handle.faults.clear()
    with bed.engine(standby_url).connect() as conn:
        first_after = conn.execute(
            text(
                "SELECT min(extract(epoch FROM started_at)) FROM krs.sync_run"
                " WHERE id > :id AND started_at > to_timestamp(:kill)"
            ),
            {"id": before[0], "kill": kill_at},
        ).scalar_one()
        final = conn.execute(
            text("SELECT id, status, records FROM krs.sync_run ORDER BY id DESC LIMIT 1")
        ).one()
    return Failover(
        outcome=outcome[0],
        surviving_tokens=surviving,
        kill_at=kill_at,
        promote_seconds=promote_seconds,
        resumed_after=float(first_after) - kill_at,
        final_run=(int(final[0]), str(final[1]), int(final[2])),
    )


@pytest.fixture
def bed() -> Iterator[Bed]:
    with replication_bed(UNITS, SEED) as bed:
        yield bed


# The API's URL lists both servers: `any` with the primary first must move to the standby when
# the primary dies; `prefer-standby` reads the standby throughout, through its promotion.
@pytest.mark.parametrize(
    ("kind", "api_attrs"), [("full", "any"), ("delta", "prefer-standby")], ids=["full", "delta"]
)
def test_failover_during_a_sync(bed: Bed, kind: Literal["full", "delta"], api_attrs: str) -> None:
    topo = bed.topology
    bed.source.evolve(250, SEED + 1)
    api_url = topo.multi_host_url(api_attrs)
    with serve_process(api_url, env=bed.env(api_url)) as api:
        load = ApiLoad(api, probes(bed.engine(topo.primary.url), 20))
        loader = threading.Thread(target=load.run, daemon=True)
        loader.start()
        try:
            time.sleep(0.3)
            result = _fail_over(bed, kind)
            time.sleep(0.5)  # and the API still answers after the switch
        finally:
            load.stop.set()
            loader.join(timeout=15)

    assert result.outcome == "ok"
    _run_id, status, records = result.final_run
    assert status == "ok"
    # The promoted server is the only one left: the replica on it equals the source.
    verdict = bed.verdict(topo.standby.url)
    assert verdict.ok, verdict.explain()
    assert verdict.rows > 500
    feeds = {key: oracle.read_feed(bed.source.url, key) for key in KEYS}
    if kind == "delta":
        # Resumed from the last token that survived the crash: exactly the records after it.
        after = sum(
            1
            for key, feed in feeds.items()
            for row in feed.values()
            if row.token > (result.surviving_tokens.get(key) or oracle.ZERO)
        )
        assert records == after
        assert records < sum(len(f) for f in feeds.values())
    else:
        assert records == sum(len(f) for f in feeds.values())

    errors = load.errors()
    served = len(load.answers)
    assert served > 50
    assert len(errors) <= 5, errors  # the switch, not an outage
    assert load.longest_gap() < 10
    bed.figures = {
        "kind": kind,
        "api_target_session_attrs": api_attrs,
        "promote_s": round(result.promote_seconds, 3),
        "scheduler_resumed_after_kill_s": round(result.resumed_after, 3),
        "detection_delay_s": DETECTION,
        "final_run_records": records,
        "api_requests": served,
        "api_errors": len(errors),
        "api_error_statuses": sorted({s for _, s in errors}),
        "api_longest_gap_s": round(load.longest_gap(), 3),
        "replica_rows_checked": verdict.rows,
    }
    bed.report(f"failover-{kind}")
