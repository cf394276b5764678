"""The sync engine: KRS pages → COPY into a staging table → merge by PID, one transaction a page.

Guarantees (docs/reference/design.md §1):
* *Exactly once by PID.* Every delivery is upserted by PID and the latest delivery wins, so
  replaying a page (after a crash) changes nothing, and a row touched at the source (same PID,
  newer token) is overwritten in place. Rows whose content did not change are not rewritten.
* *Token with the page.* A page's rows and the datatype's new token are committed in one
  transaction; the token never moves past data that is not stored.
* *Full sync is atomic.* A full replays the feed from token 0 into temporary shadow tables; only
  when every datatype has loaded does one transaction compare them with the live tables (the
  reconciliation), apply the differences (delete, insert, update by PID) and set the tokens.
  Readers see the old replica or the new one, never a mix. The live tables are changed in place
  rather than swapped by rename, so the `sor` views (bound to the tables) stay valid, and
  unchanged rows are not rewritten.

Runs are serialised by the `sync` advisory lock and recorded in `krs.sync_run`. Errors are not
retried here: the run ends `failed` and the scheduler decides when to try again.

This module is the entry point: it checks the request, takes the lock, checks the source binding
and picks the mode. The parts: `store` (a page into PostgreSQL, the same for every mode), `load`
(a datatype's pages into a store), `delta`, `full` (shadow tables, reconciliation, the swap) and
`initial` (the first full, into an empty replica), `run` (the run record, the lock and the
failure bookkeeping) and `results` (what a run reports).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from sqlalchemy import Engine

from sorsync.datatypes import Datatype
from sorsync.db.engine import psycopg_connection
from sorsync.krs import wire
from sorsync.mapping import Expected
from sorsync.sync import binding, initial
from sorsync.sync.cancel import Cancellation
from sorsync.sync.delta import run_delta
from sorsync.sync.full import run_full
from sorsync.sync.pages import PageSource, SnapshotSource
from sorsync.sync.results import (
    DEFAULT_MAX_SHRINK,
    DatatypeResult,
    Kind,
    ProgressCallback,
    RunResult,
)
from sorsync.sync.run import Run, exclusive, execute


def sync(
    engine: Engine,
    source: PageSource,
    datatypes: Sequence[Datatype],
    *,
    kind: Kind = "delta",
    page_size: int = wire.MAX_RECORDS,
    on_progress: ProgressCallback | None = None,
    prefetch: bool = True,
    examples: int = 10,
    expected_fields: Mapping[str, Expected] | None = None,
    source_identity: str | None = None,
    rebind: bool = False,
    max_shrink: float = DEFAULT_MAX_SHRINK,
    allow_shrink: bool = False,
    cancel: Cancellation | None = None,
    indexes: Mapping[str, Sequence[str]] | None = None,
) -> RunResult:
    """Run one delta or full sync of `datatypes` from `source` into the replica.

    `expected_fields` (datatype key → what the mapping expects) lets the run compare each
    document datatype's fields with the mapping, warn once about a difference and record it.
    A full that would remove more than `max_shrink` of a datatype's rows is refused before the
    swap unless `allow_shrink`.

    `source_identity` names the source (sorsync.sync.binding): a run against a datatype bound
    to another source raises `binding.ForeignSource` before anything is written, except a full
    with `rebind`, which binds the datatypes to it when it applies.

    `indexes` (table → CREATE INDEX statements) are the indexes a first full builds on a table
    after loading it rather than keeping them up row by row (sorsync.db.views leaves them off
    empty tables for it).

    `cancel` stops the run at its next page boundary (sorsync.sync.cancel): it ends `failed`
    as interrupted, with `RunResult.interrupted` set, keeping every committed page.

    Raises `LockHeld` (sorsync.db.locks) when another run is in progress. Every other failure
    ends the run with status `failed` (see `RunResult.error`); nothing is retried here.
    """
    if kind not in ("delta", "full"):
        raise ValueError(f"kind must be 'delta' or 'full', not {kind!r}")
    if not 1 <= page_size <= wire.MAX_RECORDS:
        raise ValueError(f"page_size must be 1..{wire.MAX_RECORDS}, not {page_size}")
    dts = list(dict.fromkeys(datatypes))
    if not dts:
        raise ValueError("no datatypes to sync")
    if kind != "full" and isinstance(source, SnapshotSource):
        raise ValueError("a complete dataset (a file export) is only ever applied as a full")
    run = Run(
        engine,
        source,
        kind,
        page_size=page_size,
        prefetch=prefetch,
        examples=examples,
        expected=dict(expected_fields or {}),
        source_identity=source_identity,
        max_shrink=1.0 if allow_shrink else max_shrink,
        cancel=cancel,
        indexes={table: list(stmts) for table, stmts in (indexes or {}).items()},
    )
    if on_progress is not None:
        run.on_progress = on_progress
    with exclusive(engine):
        if source_identity is not None and not (kind == "full" and rebind):
            with psycopg_connection(engine) as pg:
                binding.check_and_claim(pg, source_identity, dts)
        return execute(run, dts, _mode)


def _mode(
    run: Run, pg: psycopg.Connection[Any], dts: list[Datatype], results: dict[str, DatatypeResult]
) -> None:
    """The run's mode: a delta, a first full into an empty replica, or a full."""
    if run.kind == "delta":
        run_delta(run, pg, dts, results)
    elif initial.applies(pg, dts):
        initial.run_initial(run, pg, dts, results)
    else:
        run_full(run, pg, dts, results)
