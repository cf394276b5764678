"""Shared machinery of the reliability tests and the soak scripts: a private migrated database,
a simulator filled with generated SOR data that can evolve a day at a time, and `sorsync`
as a real subprocess."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn
from sqlalchemy import Engine, text

from api.app import create_app
from sorsync.datatypes import V1_DATATYPES
from sorsync.db import migrate
from sorsync.db.engine import make_engine
from sorsync.simulator.generator import SnapshotModel, evolve, generate, write_sortree
from sorsync.simulator.importer import load_snapshot
from sorsync.simulator.server import SimulatorHandle, serve_in_thread
from sorsync.simulator.store import Store
from tests.fixtures.db import create_database, drop_database

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def private_database(prefix: str = "sorsync_rel") -> Iterator[tuple[str, Engine]]:
    """A freshly created and migrated database of its own (URL, engine), dropped afterwards."""
    url = create_database(prefix)
    migrate.upgrade(url)
    engine = make_engine(url, pool=False)
    try:
        yield url, engine
    finally:
        engine.dispose()
        drop_database(url)


@dataclass
class GeneratedSource:
    """A running simulator serving a generated SOR tree; `evolve` loads the next day's snapshot
    (renames, moves, closures, new units…) the way NSP's nightly import would."""

    handle: SimulatorHandle
    model: SnapshotModel
    imports: int = 1
    changes: list[int] = field(default_factory=list)

    @classmethod
    def start(cls, units: int, seed: int) -> GeneratedSource:
        model = generate(units, seed=seed)
        store = Store()
        _load(store, model)
        handle = serve_in_thread(store)
        quiet(handle)
        return cls(handle, model)

    @property
    def url(self) -> str:
        return self.handle.url

    def rows(self) -> int:
        with self.handle.store.lock:
            return sum(len(t) for t in self.handle.store.tables.values())

    def evolve(self, changes: int, seed: int) -> None:
        evolve(self.model, changes, seed=seed)
        _load(self.handle.store, self.model)
        self.imports += 1
        self.changes.append(changes)

    def stop(self) -> None:
        self.handle.stop()


def quiet(handle: SimulatorHandle) -> SimulatorHandle:
    """Silence socketserver's traceback print for connections a killed or timed-out client
    dropped mid-answer: expected here, and the noise would bury the report."""
    handle.server.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
    return handle


def _load(store: Store, model: SnapshotModel) -> None:
    buffer = io.BytesIO()
    write_sortree(model, buffer)
    buffer.seek(0)
    load_snapshot(store, buffer)


def cli_env(database_url: str, krs_url: str, **extra: str) -> dict[str, str]:
    """The environment of a `sorsync` child: only our settings, nothing inherited."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SORSYNC_")}
    env.update(SORSYNC_DATABASE_URL=database_url, SORSYNC_KRS_URL=krs_url, SORSYNC_KRS_TIMEOUT="10")
    # The v1 views unless a test names others (a configured KRS defaults to SOR2).
    env.update(SORSYNC_KRS_DATATYPES=",".join(V1_DATATYPES))
    env.update(extra)
    return env


def sorsync_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "sorsync", *args]


def run_sorsync(
    args: list[str], env: Mapping[str, str], cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        sorsync_argv(*args),
        env=dict(env),
        cwd=cwd,  # a directory without a stray .env file
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def last_run(engine: Engine) -> tuple[int, str, str | None] | None:
    """(id, status, error) of the newest krs.sync_run row."""
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT id, status, error FROM krs.sync_run ORDER BY id DESC LIMIT 1")
        ).first()
    return None if row is None else (int(row[0]), str(row[1]), row[2])


class ApiServer:
    """The API app served by uvicorn on 127.0.0.1 (ephemeral port) in a thread of this
    process: real HTTP parsing, real connection handling."""

    def __init__(self, database_url: str) -> None:
        app = create_app(database_url=database_url, version_ttl=0)
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        self.port = int(self.server.servers[0].sockets[0].getsockname()[1])
        self.base = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
