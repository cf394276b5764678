"""Where a PostgreSQL server stands in PostgreSQL's own streaming replication: the primary, or a
hot standby and how far its data lags behind (docs/deployment.md). Read by `/v1/status`,
`sorsync status` and the API's `/metrics`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, text


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


@dataclass(frozen=True, slots=True)
class Replication:
    """Where the server answering stands in PostgreSQL's own replication: a primary, or a hot
    standby and how far it lags behind its primary."""

    role: Literal["primary", "standby"]
    # Standby only. Seconds the data lags behind the primary: 0 when everything received is
    # replayed, else the time since the last replayed commit was made on the primary
    # (pg_last_xact_replay_timestamp). None: nothing replayed yet since the standby started.
    lag_seconds: float | None = None
    replayed_at: datetime | None = None  # commit time on the primary of the last replayed change
    # The WAL receiver's state (pg_stat_wal_receiver.status, e.g. "streaming"); None when it is
    # not connected to a primary: then the lag cannot grow visibly, and new data does not come.
    wal_receiver: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "lag_seconds": None if self.lag_seconds is None else round(self.lag_seconds, 3),
            "replayed_at": _iso(self.replayed_at),
            "wal_receiver": self.wal_receiver,
        }


PRIMARY = Replication(role="primary")

# One round trip; the functions are allowed to any role (pg_stat_wal_receiver's status too).
_REPLICATION = """
SELECT pg_is_in_recovery() AS standby,
       pg_last_xact_replay_timestamp() AS replayed_at,
       pg_last_wal_receive_lsn() IS NOT NULL
         AND pg_last_wal_receive_lsn() <= pg_last_wal_replay_lsn() AS caught_up,
       (SELECT status FROM pg_stat_wal_receiver LIMIT 1) AS wal_receiver
"""


def replication(conn: Connection, now: datetime) -> Replication:
    row = conn.execute(text(_REPLICATION)).one()
    if not row.standby:
        return PRIMARY
    lag: float | None
    if row.caught_up and row.wal_receiver == "streaming":
        lag = 0.0
    elif row.replayed_at is not None:
        lag = max(0.0, (now - row.replayed_at).total_seconds())
    else:
        lag = None
    return Replication(
        role="standby", lag_seconds=lag, replayed_at=row.replayed_at, wal_receiver=row.wal_receiver
    )
