"""Engines and sessions, and the raw psycopg connection the bulk paths (COPY) work on. One place
decides pool settings and connection parameters."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, cast

import psycopg
from psycopg import pq
from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool


def make_engine(url: str, *, pool: bool = True, application_name: str = "sorsync") -> Engine:
    """An engine on psycopg 3. `pool=False` gives a NullPool engine for locks and migrations,
    where a pooled connection would keep a session-level advisory lock alive after close."""
    kwargs: dict[str, object] = {
        "connect_args": {"application_name": application_name},
        "pool_pre_ping": True,
    }
    if pool:
        kwargs.update(pool_size=10, max_overflow=20)
    else:
        kwargs["poolclass"] = NullPool
    return create_engine(url, **kwargs)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextlib.contextmanager
def psycopg_connection(engine: Engine) -> Iterator[psycopg.Connection[Any]]:
    """A psycopg connection from `engine` in autocommit mode: transactions are explicit."""
    raw = engine.raw_connection()
    try:
        pg = cast("psycopg.Connection[Any]", raw.driver_connection)
        if pg.info.transaction_status != pq.TransactionStatus.IDLE:
            pg.rollback()
        pg.autocommit = True
        try:
            yield pg
        finally:
            if not pg.closed and pg.info.transaction_status == pq.TransactionStatus.IDLE:
                pg.autocommit = False
    finally:
        raw.close()
