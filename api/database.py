"""The API's database handle: one pooled engine plus a short-lived cache of the data version.

Tuned for many tiny indexed reads: connections run in autocommit (set once per connection, so
no BEGIN/ROLLBACK round trips), and are not pinged before each use. Instead a lookup that
finds its pooled connection dead (database restarted, failover) drops the pool and is retried
once on a fresh connection: reads are idempotent, so clients do not notice, and nothing needs
restarting when the database comes back. `connect_timeout` and `statement_timeout` keep a dead
or overloaded database from hanging requests (they answer 503 instead).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.exc import DBAPIError

from sorsync.db import loaders
from sorsync.lookup import DataVersion, aio, data_version

# Whatever the replica holds, a lookup reads it (a year-1-BC timestamp stored by an older
# version answered 500): registered globally, so every connection of the API has them.
loaders.register(psycopg.adapters)

CONNECT_TIMEOUT_S = 5
STATEMENT_TIMEOUT_MS = 15_000

POOL_SIZE = 20
MAX_OVERFLOW = 20
POOL_TIMEOUT_S = 10
# Async lookups in flight on the database at once, per worker. Measured (2 cores shared by API,
# PostgreSQL and load generator): 4 gave ~10 % more lookups/s than 40 and cut p99 at 16
# clients from ~14 ms to ~8 ms, at 64 clients from ~110 ms to ~31 ms: more concurrent backends
# only compete with the API process for CPU. One query takes ~0.2 ms, so 4 keep one worker busy.
ASYNC_CONNECTIONS = 4
CONNECT_ARGS: dict[str, Any] = {
    "application_name": "sorsync-api",
    "connect_timeout": CONNECT_TIMEOUT_S,
    # JIT off for the whole session: the API's connections are in autocommit, so a
    # `set_config('jit', 'off', true)` before a query (sorsync.lookup.resolve_shak_json) ended
    # with its own statement, and POST /v1/shak/resolve of 10 000 codes spent 1.5-3.5 s compiling
    # a plan that runs in 0.3 s. No lookup here is long enough for JIT to pay.
    "options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS} -c jit=off",
}

T = TypeVar("T")


def api_engine(url: str) -> Engine:
    return create_engine(
        url,
        connect_args=CONNECT_ARGS,
        isolation_level="AUTOCOMMIT",
        pool_size=POOL_SIZE,  # AnyIO's threadpool runs up to 40 sync endpoints at once
        max_overflow=MAX_OVERFLOW,
        pool_timeout=POOL_TIMEOUT_S,
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
        self._async: _AsyncPool | None = None

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

    def fresh_version(self) -> DataVersion | None:
        """The cached data version while it is younger than `version_ttl`, else None."""
        if self._version is not None and time.monotonic() < self._version_expires:
            return self._version
        return None

    def _remember(self, version: DataVersion) -> DataVersion:
        self._version, self._version_expires = version, time.monotonic() + self.version_ttl
        return version

    def data_version(self, conn: Connection) -> DataVersion:
        return self.fresh_version() or self._remember(data_version(conn))

    async def arun(self, work: Callable[[aio.AsyncConn], Awaitable[T]]) -> T:
        """`run` for async lookups: `work(conn)` on the event loop's own connections, once more
        on a fresh connection if the pooled one turns out to be dead."""
        pool = self._async
        loop = asyncio.get_running_loop()
        if pool is None or pool.loop is not loop:
            # Connections belong to the loop that opened them (tests run several loops).
            if pool is not None:
                pool.close()
            args, params = self.engine.dialect.create_connect_args(self.engine.url)
            pool = self._async = _AsyncPool(loop, args, {**params, **CONNECT_ARGS})
        return await pool.run(work)

    async def adata_version(self, conn: aio.AsyncConn) -> DataVersion:
        return self.fresh_version() or self._remember(await aio.data_version(conn))

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
        if self._async is not None:
            self._async.close()
            self._async = None


class _AsyncPool:
    """Autocommit AsyncConnections of one event loop: idle ones are reused, at most
    ASYNC_CONNECTIONS in use at once, opened on demand; waiting longer than POOL_TIMEOUT_S for
    one is a 503 (as the sync pool). Deliberately minimal: the API only runs short reads here."""

    def __init__(self, loop: asyncio.AbstractEventLoop, args: Any, params: dict[str, Any]):
        self.loop = loop
        self._args, self._params = list(args), params
        self._idle: list[aio.AsyncConn] = []
        self._slots = asyncio.Semaphore(ASYNC_CONNECTIONS)

    async def _connect(self) -> aio.AsyncConn:
        try:
            return await psycopg.AsyncConnection.connect(
                *self._args, autocommit=True, prepare_threshold=1, **self._params
            )
        except psycopg.Error as exc:
            raise aio.database_error("(connect)", {}, exc) from exc

    async def run(self, work: Callable[[aio.AsyncConn], Awaitable[T]]) -> T:
        try:
            await asyncio.wait_for(self._slots.acquire(), POOL_TIMEOUT_S)
        except TimeoutError:
            busy = psycopg.OperationalError(f"no database connection free in {POOL_TIMEOUT_S} s")
            raise aio.database_error("(pool)", {}, busy) from None
        try:
            return await self._run(work)
        finally:
            self._slots.release()

    async def _run(self, work: Callable[[aio.AsyncConn], Awaitable[T]]) -> T:
        reused = bool(self._idle)
        conn = self._idle.pop() if reused else await self._connect()
        try:
            result = await work(conn)
        except DBAPIError:
            await self._release(conn)
            if not reused or not (conn.closed or conn.broken):
                raise
            # The pooled connection was dead (database restarted): so are the other idle
            # ones. Reads are idempotent: once more on a fresh connection.
            await self._drop_idle()
        except BaseException:
            await self._release(conn)  # e.g. 404 (ProblemError) or cancellation
            raise
        else:
            await self._release(conn)
            return result
        conn = await self._connect()
        try:
            return await work(conn)
        finally:
            await self._release(conn)

    async def _release(self, conn: aio.AsyncConn) -> None:
        """Back to the idle list if it is fit for the next lookup, else closed."""
        idle = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        if idle and not conn.broken and len(self._idle) < ASYNC_CONNECTIONS:
            self._idle.append(conn)
        else:
            await conn.close()  # a no-op if it is closed already

    def close(self) -> None:
        """Close the idle connections without the event loop (it may be gone): no I/O is
        pending on them, so dropping the libpq connection is all there is to it."""
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.pgconn.finish()

    async def _drop_idle(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.close()
