"""The API's database handle: SQLAlchemy's pooled engine for the routes that run in threads,
psycopg_pool's AsyncConnectionPool for the lookups on the event loop, and a short-lived cache of
the data version.

Tuned for many tiny indexed reads: connections run in autocommit (set once per connection, so
no BEGIN/ROLLBACK round trips), and are not pinged before each use. Instead a lookup that
finds its pooled connection dead (database restarted, failover) drops the pool's connections and
is retried once on a fresh connection: reads are idempotent, so clients do not notice, and
nothing needs restarting when the database comes back. `connect_timeout` and `statement_timeout`
keep a dead or overloaded database from hanging requests (they answer 503 instead), and an async
lookup does not wait for a connection the pool cannot make (`_LoopPool`).
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, Self, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.exc import DBAPIError

from sorsync.db import loaders
from sorsync.lookup import DataVersion, aio, data_version, run

# Whatever the replica holds, a lookup reads it (a year-1-BC timestamp stored by an older
# version answered 500): registered globally, so every connection of the API has them.
loaders.register(psycopg.adapters)

CONNECT_TIMEOUT_S = 5
STATEMENT_TIMEOUT_MS = 15_000

POOL_SIZE = 20
MAX_OVERFLOW = 20
POOL_TIMEOUT_S = 10
RECYCLE_S = 1800  # before idle-connection reapers in firewalls or poolers strike
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
        pool_recycle=RECYCLE_S,
    )


class Database:
    """Engine + data-version cache. `version_ttl` seconds bounds how long after a sync the old
    ETag may still be served (0 = ask the database on every request)."""

    def __init__(self, url: str | None = None, *, version_ttl: float = 1.0) -> None:
        self._url = url
        self._engine: Engine | None = None
        self._lock = threading.Lock()
        self.version_ttl = version_ttl
        # The version last read on any connection, for answers that need no connection (the
        # answer cache, 304s), and the version each connection last read, for the answers it
        # builds: see `data_version`.
        self._version: DataVersion | None = None
        self._version_expires = 0.0
        self._versions: weakref.WeakKeyDictionary[object, tuple[DataVersion, float]] = (
            weakref.WeakKeyDictionary()
        )
        self._async: _LoopPool | None = None

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
        """The data version last read, while it is younger than `version_ttl`, else None: for
        answers built earlier (the answer cache keeps each under the version it was built
        with), never to tag data read now."""
        if self._version is not None and time.monotonic() < self._version_expires:
            return self._version
        return None

    def _remember(self, key: object, version: DataVersion) -> DataVersion:
        expires = time.monotonic() + self.version_ttl
        self._version, self._version_expires = version, expires
        self._versions[key] = (version, expires)
        return version

    def _known(self, key: object) -> DataVersion | None:
        known = self._versions.get(key)
        if known is not None and time.monotonic() < known[1]:
            return known[0]
        return None

    def data_version(self, conn: Connection) -> DataVersion:
        """The data version to tag what is read next on `conn` with: the one read on this very
        connection within `version_ttl`. The connections may be on different servers (a URL
        listing a primary and standbys), and a version read on one server would claim data
        that another has not replayed yet. On one server, versions only move forward, so a
        version read earlier on the connection is at most older than the data (the ETag moves
        on within `version_ttl`), never newer."""
        key = conn.connection.dbapi_connection
        return self._known(key) or self._remember(key, run(conn, data_version()))

    async def arun(self, work: Callable[[aio.AsyncConn], Awaitable[T]]) -> T:
        """`run` for async lookups: `work(conn)` on the event loop's pool, once more on a fresh
        connection if the pooled one turns out to be dead. A loop without a pool (no `aopen`:
        a script, a test's own loop) gets a connection of its own for the one call."""
        pool = self._async
        if pool is not None and pool.loop is asyncio.get_running_loop():
            return await pool.run(work)
        conninfo, kwargs = self._async_params()
        try:
            conn = await psycopg.AsyncConnection.connect(conninfo, **kwargs)
        except psycopg.Error as exc:
            raise aio.database_error("(connect)", {}, exc) from exc
        async with conn:
            return await work(conn)

    def _async_params(self) -> tuple[str, dict[str, Any]]:
        args, params = self.engine.dialect.create_connect_args(self.engine.url)
        kwargs = {**params, **CONNECT_ARGS, "autocommit": True, "prepare_threshold": 1}
        return (args[0] if args else ""), kwargs

    async def aopen(self) -> None:
        """Open the running event loop's pool (connecting in the background); the app's
        lifespan does, and `aclose` at shutdown. The pool's tasks belong to this loop and must
        be closed on it: psycopg_pool's workers outlive a cancellation, so a loop that ends with
        its pool open waits for them for ever."""
        loop = asyncio.get_running_loop()
        if self._async is not None and self._async.loop is loop:
            return
        pool = _LoopPool(*self._async_params())
        await pool.open()
        if self._async is not None and self._async.loop is loop:
            await pool.close()  # another caller opened one meanwhile
            return
        if self._async is not None:
            self._async.abandon()  # of another loop, not closed there (tests run several)
        self._async = pool

    async def aclose(self) -> None:
        """Close the running loop's pool (the app's lifespan, at shutdown)."""
        pool = self._async
        if pool is not None and pool.loop is asyncio.get_running_loop():
            self._async = None
            await pool.close()

    async def adata_version(self, conn: aio.AsyncConn) -> DataVersion:
        """`data_version` on an async connection."""
        return self._known(conn) or self._remember(conn, await aio.arun(conn, data_version()))

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
        if self._async is not None:
            self._async.abandon()
            self._async = None


class _LoopPool:
    """psycopg_pool's AsyncConnectionPool for one event loop (its locks, queue and workers
    belong to the loop that opened it; tests run several loops), plus what the pool does not do
    for the API: fail fast while the database is down, and close without the loop.

    psycopg_pool keeps a client waiting while it tries to connect in the background, so with the
    database down a lookup would wait the whole POOL_TIMEOUT_S before its 503. Here every
    connection attempt that fails wakes the waiting lookups with its error, as long as no
    connection is out that could still come back to them: a refused connection answers 503 at
    once, an unreachable host within CONNECT_TIMEOUT_S. The pool gives a failed connection up at
    once (`reconnect_timeout=0`), not after minutes of growing back-off, so the next lookup tries
    again and one after the database is back connects straight away.

    Lookups beyond ASYNC_CONNECTIONS wait for a slot here rather than in the pool, so the pool
    always has a connection for the lookup that asks: its hand-over to a waiting client (a
    queued client, a condition, a timer) cost ~45 µs CPU a lookup at 16 concurrent, against
    a few for a semaphore (docs/performance.md). A slot's waiters are woken by a failed
    connection attempt like the pool's, and wait at most POOL_TIMEOUT_S.
    """

    def __init__(self, conninfo: str, kwargs: dict[str, Any]) -> None:
        self.loop = asyncio.get_running_loop()
        self._slots = asyncio.Semaphore(ASYNC_CONNECTIONS)
        self._waiting: set[asyncio.Timeout] = set()  # for a slot, or in the pool's getconn
        self._out = 0  # connections handed out, which may still come back to a waiting lookup
        self._failure: psycopg.Error | None = None
        # Every connection the pool made, with when: for close without the loop, and to drain
        # the pool once per outage rather than once per lookup that meets a dead connection.
        self._born: weakref.WeakKeyDictionary[aio.AsyncConn, float] = weakref.WeakKeyDictionary()
        self._drained_at = 0.0
        self.pool: AsyncConnectionPool[aio.AsyncConn] = AsyncConnectionPool(
            conninfo,
            connection_class=self._connection_class(),
            kwargs=kwargs,
            min_size=ASYNC_CONNECTIONS,
            max_size=ASYNC_CONNECTIONS,
            open=False,
            configure=self._configure,
            # No `check`: a ping before each lookup is a round trip; a dead connection is
            # noticed by the lookup itself and retried (`run`).
            name="sorsync-api",
            timeout=POOL_TIMEOUT_S,
            max_lifetime=RECYCLE_S,
            reconnect_timeout=0,
        )

    def _connection_class(self) -> type[aio.AsyncConn]:
        failed = self._connect_failed

        class Connection(psycopg.AsyncConnection[Any]):
            """Reports a failed connection attempt of the pool's to the waiting lookups."""

            @classmethod
            async def connect(cls, conninfo: str = "", **kwargs: Any) -> Self:
                try:
                    return await super().connect(conninfo, **kwargs)
                except psycopg.Error as exc:
                    failed(exc)
                    raise

        return Connection

    async def _configure(self, conn: aio.AsyncConn) -> None:
        self._failure = None
        self._born[conn] = time.monotonic()

    def _connect_failed(self, exc: psycopg.Error) -> None:
        self._failure = exc
        if self._out == 0:
            # Each woken once (a Timeout cannot be rescheduled while it expires): out of the set.
            woken, self._waiting = self._waiting, set()
            now = self.loop.time()
            for waiting in woken:
                waiting.reschedule(now)  # its wait ends in TimeoutError

    async def open(self) -> None:
        await self.pool.open()

    async def _slot(self) -> None:
        if not self._slots.locked():
            await self._slots.acquire()  # one is free: at once
            return
        try:
            async with asyncio.timeout(POOL_TIMEOUT_S) as waiting:
                self._waiting.add(waiting)
                try:
                    await self._slots.acquire()
                finally:
                    self._waiting.discard(waiting)
        except TimeoutError:
            if self._failure is not None:  # woken by a failed connection attempt
                raise aio.database_error("(connect)", {}, self._failure) from None
            busy = PoolTimeout(f"no database connection free within {POOL_TIMEOUT_S} s")
            raise aio.database_error("(pool)", {}, busy) from None

    async def _get(self) -> aio.AsyncConn:
        try:
            async with asyncio.timeout(None) as waiting:
                self._waiting.add(waiting)
                try:
                    conn = await self.pool.getconn()
                finally:
                    self._waiting.discard(waiting)
        except TimeoutError:
            down = self._failure or psycopg.OperationalError("could not connect to the database")
            raise aio.database_error("(connect)", {}, down) from None
        except psycopg.Error as exc:  # PoolTimeout: no connection free in POOL_TIMEOUT_S
            raise aio.database_error("(pool)", {}, exc) from exc
        self._out += 1
        return conn

    async def _put(self, conn: aio.AsyncConn) -> None:
        self._out -= 1
        await self.pool.putconn(conn)  # a broken one is closed and replaced

    async def run(self, work: Callable[[aio.AsyncConn], Awaitable[T]]) -> T:
        await self._slot()
        try:
            return await self._run(work)
        finally:
            self._slots.release()

    async def _run(self, work: Callable[[aio.AsyncConn], Awaitable[T]]) -> T:
        conn = await self._get()
        try:
            result = await work(conn)
        except DBAPIError:
            dead = conn.broken or conn.closed
            born = self._born.get(conn, 0.0)
            await self._put(conn)
            if not dead:
                raise
            # The connection was dead (database restarted): so are the others made before.
            # Reads are idempotent: once more, on a fresh connection.
            if born > self._drained_at:
                self._drained_at = time.monotonic()
                await self.pool.drain()
        except BaseException:
            await self._put(conn)  # e.g. 404 (ProblemError) or cancellation
            raise
        else:
            await self._put(conn)
            return result
        conn = await self._get()
        try:
            return await work(conn)
        finally:
            await self._put(conn)

    async def close(self) -> None:
        await self.pool.close()

    def abandon(self) -> None:
        """Close the connections without the event loop (it may be gone, and its tasks with
        it): no I/O is pending on them, so dropping the libpq connection is all there is to it."""
        for conn in list(self._born):
            if not conn.closed:
                conn.pgconn.finish()
        self._born.clear()
