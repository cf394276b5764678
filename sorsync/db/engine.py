"""Engines and sessions. One place decides pool settings and connection parameters."""

from __future__ import annotations

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
