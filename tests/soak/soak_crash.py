"""Soak: many seeded SIGKILL trials of `sorsync sync` (full and delta) on bigger data.

    python -m tests.soak.soak_crash [--trials 200] [--units 5000] [--changes 120] [--out FILE]

Needs PostgreSQL: SORSYNC_TEST_DATABASE_URL (a database is created and dropped), or the
embedded server. Prints one JSON summary on stdout (with every failed trial in full); exit 1
if any trial failed. The trial itself is tests/reliability/crash.py.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from sorsync.logs import configure
from tests.reliability.crash import CrashConfig, Kind, TrialOutcome, calibrate, run_trial, summarise
from tests.reliability.harness import GeneratedSource, private_database


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--units", type=int, default=5000, help="generated SOR units at start")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--page-size", type=int, default=50)
    parser.add_argument("--page-delay", type=float, default=0.003, help="seconds per KRS page")
    parser.add_argument("--changes", type=int, default=120, help="most source changes a trial")
    parser.add_argument("--out", type=Path, help="also write the summary and every trial here")
    args = parser.parse_args(argv)
    configure(level="ERROR")
    config = CrashConfig(
        page_size=args.page_size, page_delay=args.page_delay, changes=(20, max(20, args.changes))
    )

    outcomes: list[TrialOutcome] = []
    started = time.perf_counter()
    source = GeneratedSource.start(args.units, seed=args.seed)
    try:
        with (
            private_database("sorsync_soak") as (url, engine),
            tempfile.TemporaryDirectory() as tmp,
        ):
            per_row = calibrate(source, engine, url, Path(tmp), config)
            for trial in range(args.trials):
                kind: Kind = "delta" if trial % 2 == 0 else "full"
                outcome = run_trial(
                    trial,
                    kind,
                    args.seed * 100_000 + trial,
                    source=source,
                    engine=engine,
                    database_url=url,
                    workdir=Path(tmp),
                    seconds_per_row=per_row,
                    config=config,
                )
                outcomes.append(outcome)
                mark = "ok" if outcome.ok else "FAILED"
                sys.stderr.write(
                    f"trial {trial:4d} {kind:5s} kill@{outcome.kill_after:.3f}s"
                    f" {outcome.moment:8s} left {outcome.left_behind:6s}"
                    f" rows {outcome.rows:6d} {mark}\n"
                )
                sys.stderr.flush()
    finally:
        source.stop()

    summary = summarise(outcomes)
    summary.update(
        units=args.units,
        seed=args.seed,
        page_size=args.page_size,
        source_rows_at_end=outcomes[-1].rows if outcomes else 0,
        wall_seconds=round(time.perf_counter() - started, 1),
        failures=[o.to_dict() for o in outcomes if not o.ok],
    )
    sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    if args.out:
        args.out.write_text(
            json.dumps({"summary": summary, "trials": [o.to_dict() for o in outcomes]}, indent=2)
        )
    return 0 if summary["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
