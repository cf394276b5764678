"""The simulator's tables: rows per datatype with NSP's PID and ModifiedDate, served in
(ModifiedDate, PID) order after a token.

Each import run gets one ModifiedDate strictly later than the previous one, so a touched row
always moves to the end of the feed order. The order index is therefore append-only: a row's
old position is left behind as a stale entry (skipped when paging) and compacted when stale
entries pile up. Paging is a bisect plus a short scan.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sorsync.datatypes import DATATYPES, SOR2_DATATYPES, SOR2_OPTIONAL_DATATYPES, Datatype, lookup

if TYPE_CHECKING:
    from sorsync.simulator.sor2 import RecordShape

# What the simulator serves by default: the five v1 views and the SOR2 datatypes (the default
# set and the optional ones), all from the same snapshots (importer.py, sor2.py).
SERVED: dict[str, Datatype] = {
    **DATATYPES,
    **{key: lookup(key) for key in (*SOR2_DATATYPES, *SOR2_OPTIONAL_DATATYPES)},
}


@dataclass(slots=True)
class Row:
    pid: int
    modified: int  # ModifiedDate, epoch seconds (NSP stores DATETIME with second precision)
    values: dict[str, object]  # by element name; None / missing = NULL

    @property
    def sor_nummer(self) -> int | None:
        value = self.values.get("sorNummer")
        return value if isinstance(value, int) else None


def _key_element(datatype: Datatype) -> str:
    # v1 rows are versions of a sorNummer; SOR2 rows (all three datatypes) carry SorId.
    return "SorId" if datatype.is_document else "sorNummer"


class Table:
    def __init__(self, datatype: Datatype) -> None:
        self.datatype = datatype
        self.key_element = _key_element(datatype)
        self.rows: dict[int, Row] = {}
        self.by_key: dict[int, list[int]] = {}  # sorNummer (SOR2: SorId) → PIDs
        self._order: list[tuple[int, int]] = []  # (modified, pid), possibly stale
        self._stale = 0
        self._next_pid = 1

    def __len__(self) -> int:
        return len(self.rows)

    def insert(self, values: Mapping[str, object], modified: int) -> Row:
        pid = self._next_pid
        self._next_pid += 1
        row = Row(pid, modified, dict(values))
        self.rows[pid] = row
        key = self._key(row)
        if key is not None:
            self.by_key.setdefault(key, []).append(pid)
        self._append(modified, pid)
        return row

    def update(self, pid: int, values: Mapping[str, object], modified: int) -> Row:
        """Overwrite a row in place (same PID), as NSP's importer does; it is re-delivered."""
        row = self.rows[pid]
        old_key = self._key(row)
        row.values = dict(values)
        key = self._key(row)
        if key != old_key:
            if old_key is not None:
                self.by_key[old_key].remove(pid)
            if key is not None:
                self.by_key.setdefault(key, []).append(pid)
        if row.modified != modified:
            row.modified = modified
            self._stale += 1
            self._append(modified, pid)
        return row

    def _key(self, row: Row) -> int | None:
        value = row.values.get(self.key_element)
        return value if isinstance(value, int) else None

    def versions(self, sor_nummer: int) -> list[Row]:
        return [self.rows[pid] for pid in self.by_key.get(sor_nummer, ())]

    def _append(self, modified: int, pid: int) -> None:
        key = (modified, pid)
        if self._order and key < self._order[-1]:
            bisect.insort(self._order, key)  # rare: rows written out of order
        else:
            self._order.append(key)
        if self._stale > 1024 and self._stale > len(self._order) // 2:
            self._order = [k for k in self._order if self.rows[k[1]].modified == k[0]]
            self._stale = 0

    def page(self, after: tuple[int, int], limit: int) -> list[Row]:
        """Rows strictly after `after` = (modified, pid) in (modified, pid) order."""
        out: list[Row] = []
        i = bisect.bisect_right(self._order, after)
        while i < len(self._order) and len(out) < limit:
            modified, pid = self._order[i]
            row = self.rows[pid]
            if row.modified == modified:
                out.append(row)
            i += 1
        return out

    def last(self) -> Row | None:
        """The row last in feed order (highest (ModifiedDate, PID)), or None when empty."""
        for modified, pid in reversed(self._order):
            row = self.rows[pid]
            if row.modified == modified:
                return row
        return None

    def __iter__(self) -> Iterator[Row]:
        return iter(self.rows.values())


class Store:
    """All tables of one simulated KRS, with one lock: an import is atomic for readers.

    `shape` says how SOR2 records are rendered (sor2.RecordShape); replacing it takes effect
    with the next page, so a test can change the source's shape between two syncs.
    """

    def __init__(
        self, datatypes: Mapping[str, Datatype] = SERVED, *, shape: RecordShape | None = None
    ) -> None:
        from sorsync.simulator.sor2 import DEFAULT_SHAPE  # sor2 builds on this module

        self.tables: dict[str, Table] = {key: Table(dt) for key, dt in datatypes.items()}
        self.lock = threading.RLock()
        self.shape: RecordShape = shape if shape is not None else DEFAULT_SHAPE
        self._last_modified = 0

    def table(self, key: str) -> Table:
        return self.tables[key]

    @contextmanager
    def import_run(self, at: datetime | None = None) -> Iterator[int]:
        """Hold the lock for one import and give it its ModifiedDate (epoch seconds), strictly
        later than every earlier import's, like NSP's one transaction time per run."""
        with self.lock:
            now = int((at or datetime.now().astimezone()).timestamp())
            modified = max(now, self._last_modified + 1)
            self._last_modified = modified
            yield modified
