"""Read-side queries over the SOR replica (used by the API; no module here imports `api`).

Each lookup is written once, as a function building a `Query` (or `Steps` of several); `run` /
`run_steps` execute it on a SQLAlchemy Connection, `aio.arun` / `aio.arun_steps` on a psycopg
AsyncConnection (sorsync/lookup/query.py says how).
"""

from sorsync.lookup.query import Query, Steps, run, run_steps
from sorsync.lookup.status import (
    NO_VERSION,
    DataVersion,
    data_version,
)
from sorsync.lookup.units import (
    COPENHAGEN,
    KINDS,
    SearchPage,
    Unit,
    UnitTree,
    by_ean,
    by_shak,
    by_ydernummer,
    day_start,
    history,
    local_date,
    resolve_shak,
    resolve_shak_json,
    resolved,
    search,
    sor_id_known,
    today,
    unit,
    unit_tree,
    ydernummer_variants,
)

__all__ = [
    "COPENHAGEN",
    "KINDS",
    "NO_VERSION",
    "DataVersion",
    "Query",
    "SearchPage",
    "Steps",
    "Unit",
    "UnitTree",
    "by_ean",
    "by_shak",
    "by_ydernummer",
    "data_version",
    "day_start",
    "history",
    "local_date",
    "resolve_shak",
    "resolve_shak_json",
    "resolved",
    "run",
    "run_steps",
    "search",
    "sor_id_known",
    "today",
    "unit",
    "unit_tree",
    "ydernummer_variants",
]
