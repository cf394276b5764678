"""The bundled fictive demo snapshot (`data/demo-sortree.xml.gz`) and its recipe.

Regenerate it after changing the generator with `python -m sorsync.simulator.demo`; the bytes
depend only on the generator, `DEMO_UNITS` and `DEMO_SEED`.
"""

from __future__ import annotations

import gzip
import tempfile
from datetime import datetime
from pathlib import Path

from sorsync.simulator.generator import evolve, generate, write_sortree
from sorsync.simulator.importer import ImportReport, load_snapshot
from sorsync.simulator.store import Store

DEMO_UNITS = 3000
DEMO_SEED = 20250106
_DATA = Path(__file__).resolve().parent / "data"


def demo_snapshot_path() -> Path:
    """The bundled demo snapshot: ~3000 fictive units, gzip-compressed SorTree XML."""
    return _DATA / "demo-sortree.xml.gz"


def load_demo(store: Store) -> ImportReport:
    """Load the bundled demo snapshot as one import run stamped with the snapshot's own
    CreatedAtTime (2025-01-06T00:00+01:00 for the current file), not the time of loading:
    every start serves the same rows with the same PIDs and tokens, so a replica's delta after
    a simulator restart fetches nothing new (stamped with the clock, every restart would
    re-deliver all demo rows)."""
    return load_snapshot(store, demo_snapshot_path(), reproducible=True)


def write_demo(path: Path | None = None) -> Path:
    path = path or demo_snapshot_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    model = generate(DEMO_UNITS, seed=DEMO_SEED)
    with path.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        write_sortree(model, gz)  # type: ignore[arg-type]
    return path


def load_generated(
    store: Store,
    units: int,
    *,
    seed: int = 0,
    evolve_changes: int = 0,
    days: int = 0,
    at: datetime | None = None,
) -> list[ImportReport]:
    """Load a generated snapshot into `store`, then `days` evolved ones (one import each), the
    way a simulator run over several nights would see them. Uses a temporary file, not RAM."""
    model = generate(units, seed=seed)
    reports = []
    with tempfile.TemporaryFile() as tmp:
        for day in range(days + 1):
            if day:
                evolve(model, evolve_changes, seed=seed + day - 1)
            tmp.seek(0)
            tmp.truncate()
            write_sortree(model, tmp)
            tmp.seek(0)
            reports.append(load_snapshot(store, tmp, at=at))
    return reports


if __name__ == "__main__":
    print(write_demo())  # noqa: T201
