"""PostgreSQL advisory locks that make a job run once across processes and machines.

Session-level locks are taken on a dedicated, non-pooled connection: a pooled connection
would go back to the pool still holding the lock (docs/reference/python-stack.md §1.5).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, text


class LockHeld(Exception):
    """Another process holds the lock; the caller should exit with status 75 (EX_TEMPFAIL)."""


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for a lock name (crc32 is stable across processes)."""
    return zlib.crc32(f"sorsync:{name}".encode())


@contextmanager
def advisory_lock(engine: Engine, name: str, *, wait: bool = False) -> Iterator[Connection]:
    """Hold `name` for the duration of the block on a connection of its own.

    With `wait=False` raise LockHeld at once if someone else has it. The connection is
    yielded so that callers may run work on it, but they need not.
    """
    key = lock_key(name)
    with engine.connect() as conn:
        if wait:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
        else:
            got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
            if not got:
                conn.rollback()
                raise LockHeld(f"another sorsync process holds the {name!r} lock")
        conn.commit()
        try:
            yield conn
        finally:
            try:
                conn.rollback()
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
            except Exception:  # noqa: S110 - closing the connection releases the lock anyway
                pass
