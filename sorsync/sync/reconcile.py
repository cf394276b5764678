"""Reconciliation of a full sync: how the freshly replayed shadow differs from the live replica.

A healthy delta sync leaves nothing to find; anything found means the replica had drifted
(missed pages, manual edits, a restored database) and the full sync has now repaired it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg
import psycopg.sql

from sorsync.datatypes import Datatype
from sorsync.sync import sql


@dataclass(frozen=True, slots=True)
class Reconciliation:
    old_rows: int  # rows in the replica before the swap
    new_rows: int  # rows delivered by the full replay
    only_old: int  # rows the source no longer has (deleted from the replica)
    only_new: int  # rows the replica lacked (inserted)
    changed: int  # rows present in both whose content differs (updated)
    changed_columns: dict[str, int] = field(default_factory=dict)  # column → rows differing
    examples: dict[str, list[int]] = field(default_factory=dict)  # kind → up to N PIDs
    # kind → the same examples by natural key (a snapshot source that has one: sorsync.files)
    example_keys: dict[str, list[str]] = field(default_factory=dict)

    @property
    def unchanged(self) -> int:
        return self.new_rows - self.only_new - self.changed

    @property
    def differences(self) -> int:
        return self.only_old + self.only_new + self.changed

    def to_dict(self) -> dict[str, Any]:
        return {
            "old_rows": self.old_rows,
            "new_rows": self.new_rows,
            "only_old": self.only_old,
            "only_new": self.only_new,
            "changed": self.changed,
            "unchanged": self.unchanged,
            "changed_columns": dict(self.changed_columns),
            "examples": {k: list(v) for k, v in self.examples.items()},
            **({"example_keys": dict(self.example_keys)} if self.example_keys else {}),
        }

    def summary(self) -> str:
        """One line for people, e.g. `3 only in the old replica, 120 new, 4 changed (navn: 4)`."""
        if not self.differences:
            return f"no differences ({self.new_rows} rows)"
        parts = [
            f"{self.only_old} only in the old replica (removed)",
            f"{self.only_new} new (added)",
            f"{self.changed} changed (updated)",
        ]
        line = ", ".join(parts)
        if self.changed_columns:
            cols = ", ".join(f"{c}: {n}" for c, n in self.changed_columns.items())
            line += f" [columns: {cols}]"
        return line


def compute(
    pg: psycopg.Connection[Any],
    dt: Datatype,
    *,
    examples: int = 10,
    natural_key: psycopg.sql.Composable | None = None,
) -> Reconciliation:
    """Compare `krs.<table>` with its loaded shadow (on the run's connection). With
    `natural_key` (SQL over a row `r` giving text), the examples are also named by it."""
    row = pg.execute(sql.reconcile_counts(dt)).fetchone()
    assert row is not None
    old_rows, new_rows, only_old, only_new, changed, *per_column = row
    data_columns = sql.columns(dt)[1:]
    changed_columns = {c: n for c, n in zip(data_columns, per_column, strict=True) if n}
    found: dict[str, list[int]] = {}
    for which, count in (("only_old", only_old), ("only_new", only_new), ("changed", changed)):
        if count and examples > 0:
            rows = pg.execute(sql.reconcile_examples(dt, which), {"limit": examples}).fetchall()
            found[which] = [r[0] for r in rows]
    keys: dict[str, list[str]] = {}
    if natural_key is not None:
        for which, pids in found.items():
            table = sql.live(dt) if which == "only_old" else sql.shadow(dt)
            labels = dict(pg.execute(sql.labels(table, natural_key), (pids,)).fetchall())
            keys[which] = [str(labels.get(pid, pid)) for pid in pids]
    return Reconciliation(
        old_rows=old_rows,
        new_rows=new_rows,
        only_old=only_old,
        only_new=only_new,
        changed=changed,
        changed_columns=changed_columns,
        examples=found,
        example_keys=keys,
    )


def initial(
    pg: psycopg.Connection[Any],
    dt: Datatype,
    *,
    examples: int = 10,
    natural_key: psycopg.sql.Composable | None = None,
) -> Reconciliation:
    """The reconciliation of a first load: every row is new."""
    row = pg.execute(sql.count_rows(dt)).fetchone()
    assert row is not None
    rows = int(row[0])
    found: dict[str, list[int]] = {}
    if rows and examples > 0:
        pids = pg.execute(sql.first_pids(dt), {"limit": examples}).fetchall()
        found["only_new"] = [r[0] for r in pids]
    keys: dict[str, list[str]] = {}
    if natural_key is not None and found:
        labels = dict(pg.execute(sql.labels(sql.live(dt), natural_key), (found["only_new"],)))
        keys["only_new"] = [str(labels.get(pid, pid)) for pid in found["only_new"]]
    return Reconciliation(
        old_rows=0,
        new_rows=rows,
        only_old=0,
        only_new=rows,
        changed=0,
        examples=found,
        example_keys=keys,
    )
