"""Which database this process talks to: SORSYNC_DATABASE_URL, or the embedded server; and
whether a writer may use it.

SORSYNC_DATABASE_URL may name several servers in libpq's multi-host form
(`postgresql://user@/db?host=a,b&port=5432,5432&target_session_attrs=read-write`): libpq tries
them in order and keeps the first that fits `target_session_attrs`. Writers (sync, scheduler,
migrations) want `read-write` (the primary); the API is happy on a hot standby (`any`,
`prefer-standby`). docs/deployment.md shows the topology.
"""

from __future__ import annotations

import re

from sqlalchemy import Engine, make_url, text

from sorsync.config import get_settings
from sorsync.db import embedded

# libpq's target_session_attrs values that never (or not first) choose a server that accepts
# writes.
READER_ATTRS = frozenset({"read-only", "standby", "prefer-standby"})
WRITER_HINT = (
    "point SORSYNC_DATABASE_URL at the primary, or list every server with"
    " target_session_attrs=read-write (docs/deployment.md)"
)


def database_url() -> str:
    url = get_settings().database_url
    return url if url is not None else embedded.start()


def target_session_attrs(url: str) -> str | None:
    value = make_url(url).query.get("target_session_attrs")
    if isinstance(value, tuple):
        value = value[-1] if value else None
    return value


def writer_url_problem(url: str) -> str | None:
    """One line when the URL asks libpq for a standby although the command writes."""
    attrs = target_session_attrs(url)
    if attrs in READER_ATTRS:
        return (
            f"SORSYNC_DATABASE_URL asks for a standby (target_session_attrs={attrs}) but this"
            " command writes to the database: use target_session_attrs=read-write for the"
            f" scheduler, `sorsync sync` and `sorsync db upgrade` ({attrs} is for the API)"
        )
    return None


def read_only_problem(engine: Engine) -> str | None:
    """One line when the server the engine reaches cannot take writes: a hot standby (in
    recovery), or a session that is read-only by default; None when it can."""
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT pg_is_in_recovery(), current_setting('transaction_read_only') = 'on',"
                " host(inet_server_addr()), inet_server_port()"
            )
        ).one()
        conn.rollback()
    in_recovery, read_only, host, port = row
    where = f"{host}:{port}" if host is not None else make_url(engine.url).database
    if in_recovery:
        return (
            f"PostgreSQL at {where} is a read-only hot standby (in recovery) and this command"
            f" writes: {WRITER_HINT}"
        )
    if read_only:
        return (
            f"PostgreSQL at {where} is read-only (default_transaction_read_only is on) and this"
            f" command writes: {WRITER_HINT}"
        )
    return None


_SERVER_FAILED = re.compile(
    r'connection to server (?:at "(?P<host>[^"]+)"(?: \([^)]*\))?, port (?P<port>\d+)'
    r'|on socket "(?P<socket>[^"]+)") failed: (?P<reason>.*)'
)
# What libpq says of a server that target_session_attrs ruled out.
_WRONG_ROLE = ("session is read-only", "session is not read-only", "hot standby mode")


def connect_problem(url: str, exc: BaseException) -> str:
    """One line for a connection that failed: every server tried and why it was refused.

    libpq reports a multi-host failure over many lines (one per server); a person needs them
    all, on one line, and to know when the servers were up but none had the role asked for."""
    message = str(getattr(exc, "orig", None) or exc).strip()
    failures: dict[str, str] = {}
    lines = message.splitlines()
    # With several servers libpq lists every attempt, in order, on lines of their own.
    listed = [line for line in lines if line.startswith("- host:")]
    for line in listed or lines:
        match = _SERVER_FAILED.search(line)
        if match:
            server = match["socket"] or f"{match['host']}:{match['port']}"
            failures[server] = match["reason"].strip()
    where = make_url(url).render_as_string(hide_password=True)
    if not failures:
        first = message.splitlines()[0] if message else type(exc).__name__
        return (
            f"cannot reach PostgreSQL at {where} ({first}); check SORSYNC_DATABASE_URL and"
            " that the server is running"
        )
    tried = "; ".join(f"{server}: {reason}" for server, reason in failures.items())
    attrs = target_session_attrs(url)
    if attrs and all(any(w in r for w in _WRONG_ROLE) for r in failures.values()):
        return (
            f"no server in SORSYNC_DATABASE_URL fits target_session_attrs={attrs} ({tried}):"
            " after a failover promote a standby (pg_ctl promote), or check which role this"
            " process needs (docs/deployment.md)"
        )
    return (
        f"cannot reach PostgreSQL at {where} ({tried}); check SORSYNC_DATABASE_URL and that"
        " the servers are running"
    )
