"""Concurrency: two `sorsync sync` at once, and the API read under load while a full sync swaps
in a snapshot that renames every unit."""

from __future__ import annotations

import datetime as dt
import io
import random
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from sqlalchemy import Engine, text

from sorsync.simulator.generator import SnapshotModel, generate, write_sortree
from sorsync.simulator.importer import load_snapshot
from sorsync.simulator.server import serve_in_thread
from sorsync.simulator.store import Store
from tests.reliability import oracle
from tests.reliability.harness import (
    ApiServer,
    GeneratedSource,
    cli_env,
    private_database,
    quiet,
    run_sorsync,
    sorsync_argv,
)


@pytest.fixture
def db() -> Iterator[tuple[str, Engine]]:
    with private_database("sorsync_conc") as pair:
        yield pair


def _run_rows(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM krs.sync_run")).scalar_one())


def test_two_syncs_at_once_one_runs_the_other_exits_75(
    db: tuple[str, Engine], tmp_path: Any
) -> None:
    url, engine = db
    source = GeneratedSource.start(600, seed=21)
    try:
        env = cli_env(url, source.url, SORSYNC_KRS_PAGE_SIZE="20")
        # Slow pages keep the first run going until the second has tried; then full speed.
        source.handle.faults.random(1.0, 1, kinds=[{"kind": "delay", "seconds": 0.3}])
        first = subprocess.Popen(
            sorsync_argv("sync", "--full"),
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 30
            while _run_rows(engine) == 0 and first.poll() is None:
                assert time.monotonic() < deadline, "the first sync never started"
                time.sleep(0.01)
            assert first.poll() is None, "the first sync finished too soon to overlap"
            second = run_sorsync(["sync"], env, tmp_path)
            assert first.poll() is None, "the first sync finished before the second tried"
            source.handle.faults.clear()
            _, err = first.communicate(timeout=120)
        finally:
            if first.poll() is None:
                first.kill()
                first.wait()
        source.handle.faults.clear()

        assert second.returncode == 75, second.stderr
        assert second.stdout == ""
        line = second.stderr.strip().splitlines()[-1]
        assert "another sorsync sync is running" in line
        assert "nothing was done" in line
        assert first.returncode == 0, err
        assert _run_rows(engine) == 1  # the refused run left no trace in sync_run
        verdict = oracle.compare(engine, source.url)
        assert verdict.ok, verdict.explain()
    finally:
        source.stop()


# --- the API during a full sync's swap ----------------------------------------------------------

READERS = 4
MARK = " [g{}]"


def _snapshot(model: SnapshotModel, generation: int) -> io.BytesIO:
    for unit in model.units():
        base = unit.name.split(" [g")[0]
        unit.name = base + MARK.format(generation)
    buffer = io.BytesIO()
    write_sortree(model, buffer)
    buffer.seek(0)
    return buffer


def _generations(body: dict[str, Any]) -> set[str]:
    names = [body["name"], *(a["name"] for a in body["ancestors"])]
    return {n.rpartition(" [g")[2].rstrip("]") if " [g" in n else "?" for n in names}


def test_reads_during_a_full_sync_swap_are_consistent(
    db: tuple[str, Engine], tmp_path: Any
) -> None:
    url, engine = db
    model = generate(800, seed=31)
    store = Store()
    load_snapshot(store, _snapshot(model, 1))
    handle = quiet(serve_in_thread(store))
    api = ApiServer(url)
    try:
        env = cli_env(url, handle.url, SORSYNC_KRS_PAGE_SIZE="100")
        assert run_sorsync(["sync", "--full"], env, tmp_path).returncode == 0
        with engine.connect() as conn:
            ids = [
                str(i)
                for i in conn.execute(
                    text(
                        "SELECT sor_id FROM sor.unit_current WHERE kind = 'sygehusafdeling'"
                        " AND parent_sor_id IS NOT NULL ORDER BY sor_id LIMIT 60"
                    )
                ).scalars()
            ]
        assert len(ids) >= 20

        model.snapshot_date += dt.timedelta(days=1)
        report = load_snapshot(store, _snapshot(model, 2))
        assert sum(c.updated for c in report.counts.values()) > 0

        stop = threading.Event()
        seen: Counter[str] = Counter()
        problems: list[str] = []
        lock = threading.Lock()

        def reader(seed: int) -> None:
            rng = random.Random(seed)
            with requests.Session() as session:
                while not stop.is_set():
                    sor_id = rng.choice(ids)
                    try:
                        response = session.get(f"{api.base}/v1/sor/{sor_id}", timeout=30)
                    except requests.RequestException as exc:
                        with lock:
                            problems.append(f"{sor_id}: {type(exc).__name__}")
                        continue
                    with lock:
                        if response.status_code != 200:
                            problems.append(
                                f"{sor_id}: HTTP {response.status_code} {response.text[:200]}"
                            )
                            continue
                        generations = _generations(response.json())
                        label = "+".join(sorted(generations))
                        seen[label] += 1
                        if len(generations) != 1:
                            problems.append(f"{sor_id}: one answer mixes generations {label}")

        threads = [threading.Thread(target=reader, args=(i,)) for i in range(READERS)]
        for t in threads:
            t.start()
        try:
            time.sleep(0.5)  # steady load before the sync starts
            done = run_sorsync(["sync", "--full", "--json"], env, tmp_path)
            time.sleep(0.5)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=30)
        assert done.returncode == 0, done.stderr
        assert not problems, problems[:10]
        # The readers really straddled the swap: old answers before, new ones after.
        assert seen["1"] > 0, seen
        assert seen["2"] > 0, seen
        assert set(seen) == {"1", "2"}, seen
    finally:
        api.stop()
        handle.stop()
