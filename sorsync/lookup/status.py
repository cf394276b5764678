"""The data version: the last successful sync run, which every cached answer is tagged with.

(The replica's per-datatype status is `sorsync.sync.status.status`.)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sorsync.lookup.query import Query, Rows


@dataclass(frozen=True, slots=True)
class DataVersion:
    """Identifies the data a lookup answers from: the last sync run that finished `ok`."""

    run_id: int | None  # None: no sync has succeeded yet (data loaded some other way, or none)
    finished_at: datetime | None

    @property
    def tag(self) -> str:
        return "none" if self.run_id is None else str(self.run_id)

    def age_seconds(self, now: datetime | None = None) -> float | None:
        if self.finished_at is None:
            return None
        return max(0.0, ((now or datetime.now(UTC)) - self.finished_at).total_seconds())


NO_VERSION = DataVersion(run_id=None, finished_at=None)

DATA_VERSION = (
    "SELECT id, finished_at FROM krs.sync_run WHERE status = 'ok' ORDER BY id DESC LIMIT 1"
)


def version_of(rows: Rows) -> DataVersion:
    return NO_VERSION if not rows else DataVersion(run_id=rows[0][0], finished_at=rows[0][1])


_DATA_VERSION_QUERY = Query(DATA_VERSION, {}, version_of)


def data_version() -> Query[DataVersion]:
    """The data version now (the query takes no parameters: one object serves every call)."""
    return _DATA_VERSION_QUERY
