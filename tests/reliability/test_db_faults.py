"""Database faults: PostgreSQL restarted (or down for a while) in the middle of `sorsync sync`,
on a private embedded server (never the machine's shared one).

The run must end cleanly — exit 1 with one clear line naming PostgreSQL and no traceback, or
exit 0 if it got through — leaving a committed state; the next run must leave the replica
equal to the source (checked by the oracle).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest
from sqlalchemy import Engine, make_url, text
from starlette.testclient import TestClient

from api.app import create_app
from api.database import POOL_TIMEOUT_S
from sorsync.db import migrate
from sorsync.db.engine import make_engine
from tests.fixtures.api import SorData, load_sor_data, record_sync_run
from tests.reliability import oracle
from tests.reliability.crash import _left_behind, snapshot
from tests.reliability.harness import GeneratedSource, cli_env, run_sorsync, sorsync_argv
from tests.reliability.pgserver import PrivatePostgres

# Slow (~30 s on 2 cores with --durations): `-m "not slow"` skips it locally; CI runs it.
pytestmark = pytest.mark.slow

KEYS = oracle.SOR_KEYS
PAGE_SIZE = "20"


@dataclass
class DbBed:
    pg: PrivatePostgres
    engine: Engine
    source: GeneratedSource
    workdir: Path
    day: int = 0


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DbBed]:
    pg = PrivatePostgres(tmp_path_factory.mktemp("private") / "pg")
    source = GeneratedSource.start(1000, seed=11)
    engine = make_engine(pg.url, pool=False)  # a fresh connection each time: it survives restarts
    try:
        migrate.upgrade(pg.url)
        yield DbBed(pg, engine, source, tmp_path_factory.mktemp("db-faults"))
    finally:
        engine.dispose()
        source.stop()
        pg.close()


def _pages(engine: Engine, after: int) -> int | None:
    try:
        with engine.connect() as conn:
            return conn.execute(
                text("SELECT pages FROM krs.sync_run WHERE id > :a ORDER BY id LIMIT 1"),
                {"a": after},
            ).scalar_one_or_none()
    except Exception:
        return None


def _last_id(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT coalesce(max(id), 0) FROM krs.sync_run")).scalar_one())


@pytest.mark.parametrize(
    ("kind", "fault"),
    [("delta", "restart"), ("full", "restart"), ("delta", "outage"), ("full", "outage")],
)
def test_postgres_lost_mid_sync(bed: DbBed, kind: str, fault: str) -> None:
    env = cli_env(bed.pg.url, bed.source.url, SORSYNC_KRS_PAGE_SIZE=PAGE_SIZE)
    args = ["sync", "--json"] + (["--full"] if kind == "full" else [])
    first = run_sorsync(args, env, bed.workdir)  # the replica starts equal to the source
    assert first.returncode == 0, first.stderr
    bed.day += 1
    bed.source.evolve(120, seed=bed.day)
    before, before_tokens = snapshot(bed.engine, KEYS)
    feeds = {k: oracle.read_feed(bed.source.url, k) for k in KEYS}
    expected = {
        k: oracle.expected_rows(f, oracle.column_types(bed.engine, k)) for k, f in feeds.items()
    }
    source_tokens = {k: oracle.last_token(f) for k, f in feeds.items()}

    last = _last_id(bed.engine)
    bed.source.handle.faults.random(1.0, 1, kinds=[{"kind": "delay", "seconds": 0.02}])
    proc = subprocess.Popen(
        sorsync_argv(*args),
        env=env,
        cwd=bed.workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            pages = _pages(bed.engine, last)
            if pages is not None and pages >= 3:
                break
            time.sleep(0.01)
        assert proc.poll() is None, "the sync ended before the database fault"
        if fault == "restart":
            bed.pg.restart()
        else:
            bed.pg.stop()
            time.sleep(1.5)
            bed.pg.start()
        out, err = proc.communicate(timeout=120)
    finally:
        bed.source.handle.faults.clear()
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    # A clean end: exit 1 with one clear line (or 0 if it got through), never a traceback.
    assert proc.returncode in (0, 1), err
    assert "Traceback" not in err, err
    assert 'File "' not in err, err
    if proc.returncode == 1:
        line = err.strip().splitlines()[-1]
        assert line.startswith("sync failed: "), line
        assert "PostgreSQL" in line, line
        assert "last committed page" in line, line
        if fault == "restart":
            # a transient cause: the message says to try again
            assert "run the sync again later" in line, line
    else:
        assert json.loads(out)["status"] == "ok"

    after, after_tokens = snapshot(bed.engine, KEYS)
    label, problems = _left_behind(
        "full" if kind == "full" else "delta",
        before,
        before_tokens,
        after,
        after_tokens,
        expected,
        source_tokens,
    )
    assert not problems, "\n".join(problems)
    if kind == "full" and proc.returncode == 1:
        assert label == "old"

    again = run_sorsync(args, env, bed.workdir)
    assert again.returncode == 0, again.stderr
    verdict = oracle.verdict(bed.engine, expected, source_tokens)
    assert verdict.ok, verdict.explain()
    with bed.engine.connect() as conn:
        statuses = (
            conn.execute(
                text("SELECT status FROM krs.sync_run WHERE id > :a ORDER BY id"), {"a": last}
            )
            .scalars()
            .all()
        )
    assert statuses[-1] == "ok"
    assert "running" not in statuses  # the interrupted run is recorded as failed/abandoned


# --- the API while the database is down ---------------------------------------------------------

DOWN_ROUTES = [
    "/v1/sor/{department}",
    "/v1/sor/{department}/history",
    "/v1/shak/800110",
    "/v1/yder/19062",
    "/v1/ean/{praksis_gln}",
    "/v1/units?q=Test",
    "/v1/status",
]


def _no_trace(body: str) -> None:
    for marker in ("Traceback", 'File "', "psycopg", "sqlalchemy"):
        assert marker not in body, body


def _api_database(bed: DbBed, name: str) -> tuple[str, SorData]:
    """A fresh database `name` on the private server with the API's test data."""
    admin = make_engine(bed.pg.url, pool=False)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    url = make_url(bed.pg.url).set(database=name).render_as_string(hide_password=False)
    migrate.upgrade(url)
    data_engine = make_engine(url, pool=False)
    data = load_sor_data(data_engine)
    record_sync_run(data_engine)
    data_engine.dispose()
    return url, data


def test_api_answers_503_while_the_database_is_down_and_recovers(bed: DbBed) -> None:
    url, data = _api_database(bed, "api_down")
    routes = [r.format(**vars(data)) for r in DOWN_ROUTES]

    with TestClient(create_app(database_url=url, version_ttl=0)) as client:
        assert client.get("/readyz").status_code == 200
        for route in routes:
            assert client.get(route).status_code == 200, route
        resolve = client.post("/v1/shak/resolve", json={"codes": ["800110", "8001"]})
        assert resolve.status_code == 200

        bed.pg.stop()
        try:
            ready = client.get("/readyz")
            assert ready.status_code == 503
            assert ready.headers["content-type"].startswith("application/problem+json")
            assert ready.json()["type"].endswith("/not-ready")
            _no_trace(ready.text)
            for route in routes:
                started = time.monotonic()
                down = client.get(route)
                assert time.monotonic() - started < 10, f"{route} hung"
                assert down.status_code == 503, (route, down.status_code, down.text)
                assert down.headers["content-type"].startswith("application/problem+json"), route
                problem = down.json()
                assert problem["status"] == 503, problem
                assert problem["type"].endswith("/database-unavailable"), problem
                assert down.headers.get("retry-after"), route
                _no_trace(down.text)
            posted = client.post("/v1/shak/resolve", json={"codes": ["800110"]})
            assert posted.status_code == 503
            _no_trace(posted.text)
            fhir = client.get(f"/fhir/Organization/{data.department}")
            assert fhir.status_code == 503
            assert fhir.headers["content-type"].startswith("application/fhir+json")
            assert fhir.json()["resourceType"] == "OperationOutcome"
            _no_trace(fhir.text)
            assert client.get("/livez").status_code == 200  # alive: do not restart it
            assert client.get("/metrics").status_code == 200
        finally:
            bed.pg.start()

        # Back without restarting the API: pooled connections are re-established.
        _wait_ready(client)
        for route in routes:
            again = client.get(route)
            assert again.status_code == 200, (route, again.text)
        assert client.post("/v1/shak/resolve", json={"codes": ["800110"]}).status_code == 200


def _wait_ready(client: TestClient) -> None:
    """Until /readyz says the database is back (the API is not restarted in between)."""
    deadline = time.monotonic() + 20
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "the API did not become ready again"
        time.sleep(0.2)


# With the database stopped, connecting fails at once (no socket, or refused): an async lookup
# (the pooled path of /v1/shak, /v1/sor and the resolve) must say so, not wait POOL_TIMEOUT_S for
# a connection the pool keeps failing to make (psycopg_pool on its own: 503 after 10.0 s). A
# bound, not a timing.
FAIL_FAST_S = 3.0


def _unavailable(response: httpx2.Response) -> bool:
    return (
        response.status_code == 503
        and response.json()["type"].endswith("/database-unavailable")
        and bool(response.headers.get("retry-after"))
    )


def test_async_lookups_fail_fast_while_the_database_is_down(bed: DbBed) -> None:
    assert FAIL_FAST_S < POOL_TIMEOUT_S / 3
    url, data = _api_database(bed, "api_fail_fast")
    paths = ["/v1/shak/800110", f"/v1/sor/{data.department}"] * 8
    app = create_app(database_url=url, version_ttl=0, cache_entries=0)
    # More lookups at once than the pool has connections: some wait for one.
    with TestClient(app) as client, ThreadPoolExecutor(8) as threads:

        def one(path: str) -> tuple[httpx2.Response, float]:
            started = time.monotonic()
            response = client.get(path)
            return response, time.monotonic() - started

        def burst() -> list[tuple[httpx2.Response, float]]:
            return list(threads.map(one, paths))

        assert all(r.status_code == 200 for r, _ in burst())
        bed.pg.stop()
        try:
            # The pooled connections are dead, then no new one can be made: each lookup, and
            # each of those that waited for a connection, answers 503 within the bound.
            for _ in range(3):
                for response, took in burst():
                    assert _unavailable(response), response.text
                    assert took < FAIL_FAST_S, f"503 after {took:.1f} s"
            started = time.monotonic()
            posted = client.post("/v1/shak/resolve", json={"codes": ["800110"]})
            assert _unavailable(posted), posted.text
            assert time.monotonic() - started < FAIL_FAST_S
        finally:
            bed.pg.start()
        # Back: the next lookups connect (the pool is not backing off for minutes).
        _wait_ready(client)
        started = time.monotonic()
        assert all(r.status_code == 200 for r, _ in burst())
        assert time.monotonic() - started < FAIL_FAST_S
