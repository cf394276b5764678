"""Where the replica stands: per datatype token, last success, rows, last error; data age.

Shared by `sorsync status`, the API's `/v1/status` and the scheduler. Times come from the
database clock so that the age does not depend on this machine's clock. On a hot standby the
sync state is what the standby has replayed, so the data age includes the replication lag; the
lag itself is reported too (`Replication`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, text

from sorsync.config import Settings
from sorsync.db.models import KRS_SCHEMA
from sorsync.db.replication import PRIMARY, Replication, replication
from sorsync.sync.binding import is_fictive


@dataclass(frozen=True, slots=True)
class DatatypeStatus:
    key: str  # register/datatype/vN
    token: str | None  # None: never synced
    updated_at: datetime | None  # when the token last moved
    last_success_at: datetime | None  # when a run last reached the end of the feed
    rows: int  # rows in the replica table
    last_error: str | None  # of the latest failed attempt; cleared by the next success
    # Document datatypes (SOR2): the record namespace last seen, and how the fields of the last
    # sync with records differed from the mapping ({"mapped_not_seen": [...], ...}).
    record_namespace: str | None = None
    drift: dict[str, list[str]] | None = None
    source: str | None = None  # what the replica is bound to (sorsync.sync.binding)

    @property
    def fictive(self) -> bool:
        return is_fictive(self.source)

    def to_dict(self) -> dict[str, Any]:
        return {
            "datatype": self.key,
            "token": self.token,
            "updated_at": _iso(self.updated_at),
            "last_success_at": _iso(self.last_success_at),
            "rows": self.rows,
            "last_error": self.last_error,
            "record_namespace": self.record_namespace,
            "field_drift": self.drift,
            "source": self.source,
            "fictive": self.fictive,
        }


@dataclass(frozen=True, slots=True)
class RunSummary:
    id: int
    kind: str
    status: str  # running | ok | failed
    started_at: datetime
    finished_at: datetime | None
    pages: int
    records: int
    error: str | None
    source: str | None = None  # the source it read (None: a run from before migration 0003)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "status": self.status,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "pages": self.pages,
            "records": self.records,
            "error": self.error,
            "source": self.source,
        }


@dataclass(frozen=True, slots=True)
class StatusReport:
    as_of: datetime  # the database's now()
    datatypes: list[DatatypeStatus]  # the configured datatypes, in configuration order
    # The oldest of the datatypes' last successes: all data is at least this fresh. None when
    # some datatype has never been synced successfully.
    last_success_at: datetime | None
    data_age_seconds: float | None
    stale: bool  # never synced, or data older than 2 × SORSYNC_DELTA_INTERVAL
    stale_after_seconds: float
    last_run: RunSummary | None
    last_ok_run: RunSummary | None
    replication: Replication = PRIMARY

    @property
    def fictive(self) -> bool:
        """Some replicated data is the built-in simulator's fictive demo data."""
        return any(d.fictive for d in self.datatypes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "as_of": _iso(self.as_of),
            "fictive": self.fictive,
            "last_success_at": _iso(self.last_success_at),
            "data_age_seconds": (
                None if self.data_age_seconds is None else round(self.data_age_seconds, 1)
            ),
            "stale": self.stale,
            "stale_after_seconds": self.stale_after_seconds,
            "datatypes": [d.to_dict() for d in self.datatypes],
            "last_run": self.last_run.to_dict() if self.last_run else None,
            "last_ok_run": self.last_ok_run.to_dict() if self.last_ok_run else None,
            "replication": self.replication.to_dict(),
        }


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


_RUN_COLUMNS = "id, kind, status, started_at, finished_at, pages, records, error, source"


def status(engine: Engine, settings: Settings) -> StatusReport:
    """Read the sync state of the configured datatypes (a few small queries, read-only)."""
    with engine.connect() as conn:
        return status_on(conn, settings)


def status_on(conn: Connection, settings: Settings) -> StatusReport:
    """`status` on a connection of the caller's: the API's, which it opens again if the pooled
    one turns out to be dead (api/database.py)."""
    dts = settings.datatypes
    stale_after = 2 * settings.delta_interval * 60.0
    now = conn.execute(text("SELECT now()")).scalar_one()
    repl = replication(conn, now)
    states = {
        (r.register, r.register_version, r.datatype, r.version): r
        for r in conn.execute(
            text(
                "SELECT register, register_version, datatype, version, token, updated_at,"
                " last_success_at, last_error, source, record_namespace, drift"
                " FROM krs.sync_state"
            )
        )
    }
    # Exact counts: SOR tables are small (≈10⁵ rows), and estimates lag after a full sync.
    counts = (
        conn.execute(
            text(
                " UNION ALL ".join(
                    f'SELECT {i} AS i, count(*) AS n FROM {KRS_SCHEMA}."{dt.table}"'
                    for i, dt in enumerate(dts)
                )
            )
        ).all()
        if dts
        else []
    )
    rows = {int(i): int(n) for i, n in counts}
    runs = conn.execute(
        text(f"SELECT {_RUN_COLUMNS} FROM krs.sync_run ORDER BY id DESC LIMIT 1")
    ).all()
    ok_runs = conn.execute(
        text(
            f"SELECT {_RUN_COLUMNS} FROM krs.sync_run WHERE status = 'ok' ORDER BY id DESC LIMIT 1"
        )
    ).all()
    conn.rollback()

    items: list[DatatypeStatus] = []
    for i, dt in enumerate(dts):
        st = states.get((dt.register, dt.register_version, dt.datatype, dt.version))
        items.append(
            DatatypeStatus(
                key=dt.key,
                token=st.token if st else None,
                updated_at=st.updated_at if st else None,
                last_success_at=st.last_success_at if st else None,
                rows=rows.get(i, 0),
                last_error=st.last_error if st else None,
                record_namespace=st.record_namespace if st else None,
                drift=st.drift if st else None,
                source=st.source if st else None,
            )
        )
    successes = [d.last_success_at for d in items]
    oldest = None if not successes or None in successes else min(s for s in successes if s)
    age = None if oldest is None else max(0.0, (now - oldest).total_seconds())
    return StatusReport(
        as_of=now,
        datatypes=items,
        last_success_at=oldest,
        data_age_seconds=age,
        stale=age is None or age > stale_after,
        stale_after_seconds=stale_after,
        last_run=_run(runs[0]) if runs else None,
        last_ok_run=_run(ok_runs[0]) if ok_runs else None,
        replication=repl,
    )


def _run(row: Any) -> RunSummary:
    return RunSummary(
        id=int(row.id),
        kind=row.kind,
        status=row.status,
        started_at=row.started_at,
        finished_at=row.finished_at,
        pages=int(row.pages),
        records=int(row.records),
        error=row.error,
        source=row.source,
    )
