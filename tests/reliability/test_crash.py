"""Crash safety: `sorsync sync` SIGKILLed at seeded random moments of full and delta runs.

Each trial is checked twice by the independent oracle (tests/reliability/oracle.py): right after
the kill the replica must be a committed state (old, new, or a delta's committed pages), and
after a restart run to completion it must equal the source's feed in every row and column.
See tests/reliability/crash.py for the trial itself; tests/soak/soak_crash.py runs many more.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import Engine

from tests.reliability.crash import CrashConfig, Kind, TrialOutcome, calibrate, run_trial, summarise
from tests.reliability.harness import GeneratedSource, private_database

# Slow (~150 s on 2 cores with --durations): `-m "not slow"` skips it locally; CI runs it.
pytestmark = pytest.mark.slow

TRIALS = 20  # alternating delta / full
UNITS = 1000  # generated SOR units (~600 replica rows, growing as the source evolves)
SEED = 20261122
CONFIG = CrashConfig(page_size=20, page_delay=0.004, changes=(30, 90))


@dataclass
class CrashBed:
    source: GeneratedSource
    engine: Engine
    url: str
    workdir: Path
    seconds_per_row: float
    outcomes: list[TrialOutcome] = field(default_factory=list)


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CrashBed]:
    source = GeneratedSource.start(UNITS, seed=SEED)
    workdir = tmp_path_factory.mktemp("crash")
    try:
        with private_database("sorsync_crash") as (url, engine):
            per_row = calibrate(source, engine, url, workdir, CONFIG)
            yield CrashBed(source, engine, url, workdir, per_row)
    finally:
        source.stop()


def _kind(trial: int) -> Kind:
    return "delta" if trial % 2 == 0 else "full"


@pytest.mark.parametrize("trial", range(TRIALS), ids=lambda t: f"{_kind(t)}-{t}")
def test_sigkill_then_restart_equals_source(bed: CrashBed, trial: int) -> None:
    outcome = run_trial(
        trial,
        _kind(trial),
        SEED + trial,
        source=bed.source,
        engine=bed.engine,
        database_url=bed.url,
        workdir=bed.workdir,
        seconds_per_row=bed.seconds_per_row,
        config=CONFIG,
    )
    bed.outcomes.append(outcome)
    assert outcome.ok, "\n".join(outcome.problems)
    assert outcome.restart_exit == 0
    assert outcome.rows > 0


def test_kills_landed_mid_run(bed: CrashBed) -> None:
    """The trials above must really have interrupted runs: in the middle of a delta's pages, in
    a full's load and in (or right at the end of) its swap."""
    summary = summarise(bed.outcomes)
    assert summary["trials"] == TRIALS, summary
    mid = [o for o in bed.outcomes if o.moment in ("loading", "swap")]
    assert len(mid) >= TRIALS // 2, summary
    assert any(o.kind == "delta" and o.left_behind == "prefix" for o in bed.outcomes), summary
    assert any(o.kind == "full" and o.moment == "loading" for o in bed.outcomes), summary
    assert any(o.kind == "full" and o.moment == "swap" for o in bed.outcomes), summary
    assert any(o.tampered for o in bed.outcomes), summary
