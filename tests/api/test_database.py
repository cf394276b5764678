"""The API's database handle (api/database.py) on its own: the async pool's slots."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy.exc import OperationalError

from api import database
from api.database import ASYNC_CONNECTIONS, Database
from sorsync.lookup import aio


def test_lookups_beyond_the_pool_wait_for_a_slot_at_most_the_pool_timeout(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More async lookups at once than the pool has connections wait for a slot; one that
    would wait longer than POOL_TIMEOUT_S ends with an OperationalError (the API's 503), and
    the slots are free again once the lookups holding them end."""
    monkeypatch.setattr(database, "POOL_TIMEOUT_S", 0.5)
    db = Database(database_url)

    async def slow(conn: aio.AsyncConn) -> str:
        await aio.fetch(conn, "SELECT pg_sleep(1.5)", {})
        return "slow"

    async def quick(conn: aio.AsyncConn) -> str:
        await aio.fetch(conn, "SELECT 1", {})
        return "quick"

    async def scenario() -> float:
        await db.aopen()
        try:
            assert await db.arun(quick) == "quick"
            holders = [asyncio.create_task(db.arun(slow)) for _ in range(ASYNC_CONNECTIONS)]
            await asyncio.sleep(0.2)  # every slot taken
            started = time.monotonic()
            busy = r"no database connection free within 0\.5 s"
            with pytest.raises(OperationalError, match=busy):
                await db.arun(quick)
            waited = time.monotonic() - started
            assert await asyncio.gather(*holders) == ["slow"] * ASYNC_CONNECTIONS
            assert await db.arun(quick) == "quick"
            return waited
        finally:
            await db.aclose()

    try:
        waited = asyncio.run(scenario())
    finally:
        db.dispose()
    assert 0.4 < waited < 1.2  # the bound, not the holders' 1.5 s
