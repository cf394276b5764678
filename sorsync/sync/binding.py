"""A replica bound to its source: which KRS (and which datatype key) its tokens came from.

A KRS token only means something to the source that issued it: a delta that sends one source's
token to another merges foreign records by PID into the replica. So every datatype's row in
`krs.sync_state` records its source (`source`), and every run records the one it used
(`krs.sync_run.source`):

* a KRS endpoint is named by its URL without credentials or secret-looking query values, plus
  the full datatype key: `https://host/path sor/v2/sorentity/v1`;
* the built-in simulator by the identity of the data it serves (sorsync.cli.demo):
  `simulator:<sha256 prefix of the bundled snapshot> sor/sygehus/v1`.

A delta (and a scheduled full) against another source is refused before anything is written
(`ForeignSource`); `sorsync sync --full` rebinds, in the transaction that applies its
reconciliation. The check runs under the sync lock, so two schedulers configured differently
on one database cannot interleave their deltas either.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg

from sorsync.datatypes import Datatype
from sorsync.krs import wire
from sorsync.sync import sql

SIMULATOR_PREFIX = "simulator:"
_SECRET_WORDS = ("pass", "secret", "token", "key", "sig", "auth", "cred", "session")


class ForeignSource(Exception):
    """The replica of a datatype was synced from another source; only a full may rebind."""

    def __init__(self, key: str, bound: str, configured: str) -> None:
        super().__init__(
            f"the replica of {key} was synced from {bound}, but this run reads {configured};"
            " its tokens mean nothing there, so nothing was done — run `sorsync sync --full`"
            " to rebuild the replica from the new source (or point SORSYNC_KRS_URL back)"
        )
        self.key = key
        self.bound = bound
        self.configured = configured


def endpoint_identity(url: str) -> str:
    """The endpoint as a source name: no user:password, no fragment, and the values of query
    parameters whose names look like secrets replaced by `***`."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    query = urlencode(
        [
            (name, "***" if any(w in name.lower() for w in _SECRET_WORDS) else value)
            for name, value in parse_qsl(parts.query, keep_blank_values=True)
        ],
        safe="*",
    )
    return urlunsplit((parts.scheme.lower(), netloc.lower(), parts.path or "/", query, ""))


def datatype_source(identity: str, dt: Datatype) -> str:
    return f"{identity} {dt.key}"


def is_fictive(source: str | None) -> bool:
    """Whether a recorded source is the built-in simulator (fictive demo data)."""
    return source is not None and source.startswith(SIMULATOR_PREFIX)


_READ = (
    "SELECT source FROM krs.sync_state WHERE register = %s AND register_version = %s"
    " AND datatype = %s AND version = %s"
)

# A new row starts at the start token, as a missing one would (and as MARK_ERROR inserts it);
# an existing row without a source (synced before migration 0003) is adopted.
_CLAIM = (
    "INSERT INTO krs.sync_state (register, register_version, datatype, version, token,"
    " updated_at, source) VALUES (%s, %s, %s, %s, %s, now(), %s)"
    " ON CONFLICT (register, register_version, datatype, version)"
    " DO UPDATE SET source = excluded.source WHERE krs.sync_state.source IS NULL"
)

_REBIND = (
    "UPDATE krs.sync_state SET source = %s WHERE register = %s AND register_version = %s"
    " AND datatype = %s AND version = %s"
)


def check_and_claim(pg: psycopg.Connection[Any], identity: str, dts: Sequence[Datatype]) -> None:
    """Refuse (ForeignSource) if any datatype is bound to another source, writing nothing;
    otherwise bind the unbound ones to `identity`. Call with the sync lock held."""
    with pg.transaction():
        for dt in dts:
            row = pg.execute(_READ, sql.state_key(dt)).fetchone()
            bound = row[0] if row else None
            wanted = datatype_source(identity, dt)
            if bound is not None and bound != wanted:
                raise ForeignSource(dt.key, bound, wanted)
        for dt in dts:
            pg.execute(
                _CLAIM, (*sql.state_key(dt), wire.START_TOKEN, datatype_source(identity, dt))
            )


def rebind(pg: psycopg.Connection[Any], identity: str, dt: Datatype) -> None:
    """Bind `dt` to `identity` (a full sync, in the transaction that applies it; the state row
    exists by then)."""
    pg.execute(_REBIND, (datatype_source(identity, dt), *sql.state_key(dt)))
