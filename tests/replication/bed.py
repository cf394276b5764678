"""What the replication tests share: the topology of tests/fixtures/replication.py with a
generated KRS source, syncs on the primary, and figures collected for the report."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, text

from sorsync.config import Settings
from sorsync.db.engine import make_engine
from sorsync.sync.results import Kind, RunResult
from sorsync.sync.service import run_sync
from tests.fixtures.replication import Topology, replication_topology, wait_caught_up
from tests.reliability import oracle
from tests.reliability.harness import GeneratedSource, cli_env

KEYS = oracle.SOR_KEYS  # the v1 datatypes: the `sor` views the API reads
PAGE_SIZE = 50


@dataclass
class Bed:
    topology: Topology
    source: GeneratedSource
    figures: dict[str, Any] = field(default_factory=dict)
    _engines: dict[str, Engine] = field(default_factory=dict)

    def engine(self, url: str) -> Engine:
        if url not in self._engines:
            self._engines[url] = make_engine(url, pool=False)
        return self._engines[url]

    @property
    def writer_url(self) -> str:
        """The scheduler's URL: every server, the one taking writes wins."""
        return self.topology.multi_host_url("read-write")

    def settings(self, url: str | None = None, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": url or self.writer_url,
            "krs_url": self.source.url,
            "krs_datatypes": KEYS,
            "krs_page_size": PAGE_SIZE,
            "krs_timeout": 10,
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)

    def sync(self, kind: Kind) -> RunResult:
        result = run_sync(self.engine(self.writer_url), self.settings(), kind=kind)
        assert result.ok, result.error
        return result

    def env(self, url: str, **extra: str) -> dict[str, str]:
        return cli_env(url, self.source.url, SORSYNC_KRS_DATATYPES=",".join(KEYS), **extra)

    def caught_up(self) -> float:
        return wait_caught_up(self.topology)

    def verdict(self, url: str) -> oracle.Verdict:
        return oracle.compare(self.engine(url), self.source.url, KEYS)

    def close(self) -> None:
        for engine in self._engines.values():
            engine.dispose()

    def report(self, name: str) -> None:
        """The figures on stdout, one JSON line (run pytest with -s to see them)."""
        print(f"\nREPLICATION FIGURES {name}: {json.dumps(self.figures, sort_keys=True)}")  # noqa: T201


@contextmanager
def replication_bed(units: int, seed: int) -> Iterator[Bed]:
    """A topology whose primary holds a full sync of a generated source (the standby caught up)."""
    source = GeneratedSource.start(units, seed=seed)
    try:
        with replication_topology() as topology:
            bed = Bed(topology, source)
            try:
                bed.sync("full")
                bed.caught_up()
                yield bed
            finally:
                bed.close()
    finally:
        source.stop()


def last_ok_run(engine: Engine) -> int | None:
    with engine.connect() as conn:
        value = conn.execute(
            text("SELECT max(id) FROM krs.sync_run WHERE status = 'ok'")
        ).scalar_one()
    return None if value is None else int(value)


def probes(engine: Engine, n: int) -> list[str]:
    """API paths of `n` SHAK codes and `n` SOR ids of units valid today, spread over the data."""
    with engine.connect() as conn:
        shaks = conn.execute(
            text(
                "SELECT DISTINCT shak FROM sor.unit_current WHERE shak IS NOT NULL"
                " ORDER BY shak LIMIT :n"
            ),
            {"n": n},
        ).scalars()
        paths = [f"/v1/shak/{s}" for s in shaks]
        ids = conn.execute(
            text("SELECT sor_id FROM sor.unit_current ORDER BY md5(sor_id::text) LIMIT :n"),
            {"n": n},
        ).scalars()
        paths += [f"/v1/sor/{i}" for i in ids]
    return paths


def wait_for(check: Any, timeout: float, what: str) -> float:
    """Poll `check()` until true; the seconds it took."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)
    return time.monotonic() - started
