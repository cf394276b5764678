"""The API's database handle: one pooled engine plus a short-lived cache of the data version.

Tuned for many tiny indexed reads: connections run in autocommit (set once per connection, so
no BEGIN/ROLLBACK round trips), and are not pinged before each use. Instead a lookup that
finds its pooled connection dead (database restarted, failover) drops the pool and is retried
once on a fresh connection: reads are idempotent, so clients do not notice, and nothing needs
restarting when the database comes back. `connect_timeout` and `statement_timeout` keep a dead
or overloaded database from hanging requests (they answer 503 instead).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.exc import DBAPIError

from sorsync.lookup import DataVersion, data_version

CONNECT_TIMEOUT_S = 5
STATEMENT_TIMEOUT_MS = 15_000

T = TypeVar("T")


def api_engine(url: str) -> Engine:
    return create_engine(
        url,
        connect_args={
            "application_name": "sorsync-api",
            "connect_timeout": CONNECT_TIMEOUT_S,
            "options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
        },
        isolation_level="AUTOCOMMIT",
        pool_size=20,  # AnyIO's threadpool runs up to 40 sync endpoints at once
        max_overflow=20,
        pool_timeout=10,
        pool_recycle=1800,  # before idle-connection reapers in firewalls or poolers strike
    )


class Database:
    """Engine + data-version cache. `version_ttl` seconds bounds how long after a sync the old
    ETag may still be served (0 = ask the database on every request)."""

    def __init__(self, url: str | None = None, *, version_ttl: float = 1.0) -> None:
        self._url = url
        self._engine: Engine | None = None
        self._lock = threading.Lock()
        self.version_ttl = version_ttl
        self._version: DataVersion | None = None
        self._version_expires = 0.0

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    if self._url is None:
                        # Imported here: it may start the embedded server, only wanted when used.
                        from sorsync.db.connect import database_url

                        self._url = database_url()
                    self._engine = api_engine(self._url)
        return self._engine

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    def run(self, work: Callable[[Connection], T]) -> T:
        """`work(conn)` on a pooled connection; once more on a fresh one if the pooled one
        turns out to be dead (the pool is dropped then: its other connections are too)."""
        try:
            with self.connect() as conn:
                return work(conn)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            self.engine.dispose(close=False)
        with self.connect() as conn:
            return work(conn)

    def data_version(self, conn: Connection) -> DataVersion:
        now = time.monotonic()
        cached = self._version
        if cached is not None and now < self._version_expires:
            return cached
        version = data_version(conn)
        self._version, self._version_expires = version, now + self.version_ttl
        return version

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
