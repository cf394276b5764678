"""The lookup functions directly, and their query plans (every lookup an index lookup)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from sqlalchemy import Engine, text

from sorsync import lookup
from sorsync.lookup import aio
from sorsync.lookup import units as q
from sorsync.lookup.query import fetch
from sorsync.lookup.status import DATA_VERSION
from tests.fixtures.api import SorData


def test_ydernummer_variants() -> None:
    assert lookup.ydernummer_variants("019062") == [
        "19062",
        "019062",
        "0019062",
        "00019062",
        "000019062",
    ]
    assert lookup.ydernummer_variants("000000000") == [
        "0",
        "00",
        "000",
        "0000",
        "00000",
        "000000",
        "0000000",
        "00000000",
        "000000000",
    ]


def test_day_start_is_danish_midnight() -> None:
    assert lookup.day_start(dt.date(2024, 7, 1)).isoformat() == "2024-07-01T00:00:00+02:00"
    assert lookup.day_start(dt.date(2024, 1, 1)).isoformat() == "2024-01-01T00:00:00+01:00"


def test_like_pattern_escapes() -> None:
    assert q.like_pattern("a%b_c\\") == "%a\\%b\\_c\\\\%"


def test_lookups(engine: Engine, sor_data: SorData) -> None:
    day = dt.date(2024, 1, 1)
    with engine.connect() as conn:
        tree = lookup.run(conn, lookup.unit_tree(int(sor_data.section), day))
        assert tree is not None
        assert [u.sor_id for u in tree.ancestors] == [
            int(sor_data.department),
            int(sor_data.hospital),
        ]
        assert lookup.run(conn, lookup.unit_tree(int(sor_data.closed_section), day)) is None
        assert lookup.run(conn, lookup.sor_id_known(int(sor_data.closed_section)))
        assert [u.name for u in lookup.run(conn, lookup.history(int(sor_data.department)))] == [
            "Medicinsk Afdeling",
            "Medicinsk Afdeling M1",
        ]
        found = lookup.run_steps(conn, lookup.resolve_shak(["800120", "8001", "0000"], day))
        assert sorted(found) == ["8001", "800120"]
        assert len(found["800120"]) == 1  # the child inherits the code: its parent answers
        as_json = lookup.run_steps(
            conn, lookup.resolve_shak_json(["800120", "8001", "0000", ""], day)
        )
        assert sorted(as_json) == ["8001", "800120"]
        assert [u["sor_id"] for u in json.loads(as_json["800120"])] == [
            str(u.sor_id) for u in found["800120"]
        ]
        with pytest.raises(ValueError, match="comma"):
            lookup.run_steps(conn, lookup.resolve_shak_json(["8001,800120"], day))
        page = lookup.run(conn, lookup.search(day=day, kind="sygehusafdeling", limit=2))
        assert len(page.items) == 2
        assert page.next_after == page.items[-1].sor_id
        rest = lookup.run(
            conn, lookup.search(day=day, kind="sygehusafdeling", after=page.next_after)
        )
        assert rest.next_after is None
        assert {u.sor_id for u in page.items + rest.items} == {
            int(sor_data.department),
            int(sor_data.section),
            int(sor_data.emergency),
            int(sor_data.emergency_unit),
        }


DAY = dt.date(2024, 1, 1)
AT = lookup.day_start(DAY)
SEARCH_BY_NAME = "SELECT sor_id FROM sor.unit u WHERE u.name ILIKE %(p)s"
PLANS: list[tuple[str, str, dict[str, Any]]] = [
    ("shak", q.BY_SHAK, {"code": "8001", "at": AT}),
    ("resolve", q.RESOLVE, {"codes": ["8001", "800110"], "day": DAY}),
    ("resolve json", q.RESOLVE_JSON, {"codes": "8001,800110", "day": DAY}),
    ("sor+ancestors", q.TREE, q.tree_params(347811000016004, DAY)),
    ("sor tree", q.TREE_WITH_CHILDREN, q.tree_params(347811000016004, DAY)),
    *(
        (f"resolved {kind}", sql, {"code": code, "day": DAY})
        for kind, sql, code in (
            ("shak", q.RESOLVED["shak"], "8001"),
            ("sor", q.RESOLVED["sor"], "347811000016004"),
            ("ean", q.RESOLVED["ean"], "5790000000012"),
            ("ydernummer", q.RESOLVED["ydernummer"], "019062"),
        )
    ),
    ("children", q.CHILDREN, {"sor_id": 347811000016004, "at": AT}),
    ("history", q.HISTORY, {"sor_id": 347811000016004}),
    ("yder", q.BY_YDER, {"numbers": ["19062", "019062"], "at": AT}),
    ("ean", q.BY_EAN, {"gln": 5790000000012, "at": AT}),
    ("search by name", SEARCH_BY_NAME, {"p": "%medicinsk%"}),
    ("data version", DATA_VERSION, {}),
]


@pytest.mark.parametrize(("name", "sql", "params"), PLANS, ids=[p[0] for p in PLANS])
def test_every_lookup_uses_indexes(
    engine: Engine, sor_data: SorData, name: str, sql: str, params: dict[str, Any]
) -> None:
    """With sequential scans priced out, any Seq Scan left on a replica table means no index
    can serve the lookup (the fixture tables are too small for the planner to prefer indexes
    on its own)."""
    with engine.connect() as conn:
        conn.execute(text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(row[0] for row in fetch(conn, "EXPLAIN " + sql, params))
        conn.rollback()
    # sor.resolve_item's ydernummer branch: the v1 tables without a ydernummer sit behind a
    # one-time filter that is false (`NULL = ANY(…)`), so their scans never run.
    gated = plan.count("One-Time Filter: (NULL::text = ANY")
    assert plan.count("Seq Scan") == gated, plan
    assert "Index" in plan


def test_api_connections_run_without_jit(database_url: str) -> None:
    """The API's connections are in autocommit, so a transaction-local `SET jit` would end with
    its statement: JIT is off for the session instead (a 10 000-code POST /v1/shak/resolve
    spent seconds compiling a plan that runs in 0.3 s)."""
    import asyncio

    from api.database import Database

    db = Database(database_url)

    async def jit_async() -> tuple[str, str]:
        async def work(conn: aio.AsyncConn) -> str:
            rows = await aio.fetch(conn, "SHOW jit", {})
            return str(rows[0][0])

        alone = await db.arun(work)  # no pool on this loop: a connection of its own
        await db.aopen()
        try:
            return alone, await db.arun(work)  # the pool's
        finally:
            await db.aclose()

    try:
        assert db.run(lambda conn: conn.exec_driver_sql("SHOW jit").scalar()) == "off"
        assert asyncio.run(jit_async()) == ("off", "off")
    finally:
        db.dispose()
