"""Benchmark the fictive SOR generator and the simulator's snapshot import.

    .venv/bin/python bench/generate_bench.py --units 1000000 [--seed 0] [--load] [--out FILE]

Prints one JSON object: units, seconds (generate + write), bytes; with --load also the import
into a simulator Store, measured in a child process so its peak RSS is its own
(load_seconds, load_peak_rss_mb, rows).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _load(path: Path) -> None:
    from sorsync.simulator.importer import load_snapshot
    from sorsync.simulator.store import Store

    store = Store()
    started = time.perf_counter()
    report = load_snapshot(store, path)
    seconds = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rows = sum(len(t) for t in store.tables.values())
    print(json.dumps({"load_seconds": round(seconds, 2), "load_peak_rss_mb": peak_kb // 1024,
                      "rows": rows, "units_read": report.units}))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--units", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--load", action="store_true", help="also import it into a Store")
    parser.add_argument("--out", type=Path, help="keep the XML here (default: a temp file)")
    parser.add_argument("--load-only", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load_only:
        _load(args.load_only)
        return

    from sorsync.simulator.generator import generate, write_sortree

    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "sortree.xml"
        started = time.perf_counter()
        model = generate(args.units, seed=args.seed)
        generated = time.perf_counter()
        with out.open("wb") as fh:
            size = write_sortree(model, fh)
        seconds = time.perf_counter() - started
        del model
        result: dict[str, object] = {
            "units": args.units,
            "seconds": round(seconds, 2),
            "generate_seconds": round(generated - started, 2),
            "write_seconds": round(seconds - (generated - started), 2),
            "bytes": size,
        }
        if args.load:
            child = subprocess.run(
                [sys.executable, __file__, "--load-only", str(out)],
                check=True,
                capture_output=True,
                text=True,
            )
            result.update(json.loads(child.stdout))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
