"""The `sor` views built from the mapping, on a real PostgreSQL: the SQL readers never fail,
building is idempotent, the views follow the data (SOR2 once it holds rows), and every SOR2
lookup is an index scan."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from psycopg.types.json import Jsonb
from sqlalchemy import Engine, text

from sorsync.db import views
from sorsync.lookup import run
from sorsync.lookup import units as q
from sorsync.lookup.query import fetch
from sorsync.mapping import default_mapping
from tests.fixtures.api import empty_replica

UTC = dt.UTC


@pytest.mark.parametrize(
    ("value", "as_date", "as_instant"),
    [
        ("2024-01-01", dt.date(2024, 1, 1), dt.datetime(2023, 12, 31, 23, tzinfo=UTC)),
        ("2023-12-31T23:00:00Z", dt.date(2024, 1, 1), dt.datetime(2023, 12, 31, 23, tzinfo=UTC)),
        (
            "2024-07-01T00:00:00+02:00",
            dt.date(2024, 7, 1),
            dt.datetime(2024, 6, 30, 22, tzinfo=UTC),
        ),
        (" 2024-02-29 ", dt.date(2024, 2, 29), dt.datetime(2024, 2, 28, 23, tzinfo=UTC)),
        ("2023-02-29", None, None),
        ("2024-13-01", None, None),
        ("0000-01-01", None, None),
        ("0001-01-01T00:00:00+14:00", None, None),
        ("9999-12-31T23:59:59-14:00", dt.date(9999, 12, 30), dt.datetime(9999, 12, 30, tzinfo=UTC)),
        ("yesterday", None, None),
        ("", None, None),
        (None, None, None),
    ],
)
def test_dates_are_read_or_null_never_an_error(
    engine: Engine, value: str | None, as_date: dt.date | None, as_instant: dt.datetime | None
) -> None:
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT sor.as_date(:v), sor.as_timestamptz(:v)"), {"v": value}
        ).one()
    assert tuple(row) == (as_date, as_instant)


def test_numbers_are_read_or_null(engine: Engine) -> None:
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT sor.as_bigint(' 42 '), sor.as_bigint('12345678901234567890'),"
                " sor.as_bigint('4.2'), sor.as_numeric('575123,45'), sor.as_numeric('x')"
            )
        ).one()
    assert tuple(row)[:3] == (42, None, None)
    assert str(row[3]) == "575123.45"
    assert row[4] is None


# Migration 0005 made sor.as_bigint cheaper; its answers must be those of the pattern it replaced.
BIGINT_EDGES = [
    *("9" * n for n in (1, 17, 18, 19, 20)),
    *("-" + "9" * n for n in (17, 18, 19)),
    *(" " * s + "1" * n + "\t" * t for s in (0, 1, 3) for n in (15, 16, 17, 18) for t in (0, 2)),
    "000000000000000042",
    "0000000000000000042",
    "-",
    "",
    " ",
    "--1",
    "1 2",
    "+1",
    "1e3",
    " -0 ",
    "\n7\n",
    "٣",
    None,
]


def test_as_bigint_answers_as_its_first_definition(engine: Engine) -> None:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT v, sor.as_bigint(v),"
                r" CASE WHEN v ~ '^\s*-?[0-9]{1,18}\s*$' THEN btrim(v)::bigint END"
                " FROM unnest(CAST(:values AS text[])) AS v"
            ),
            {"values": BIGINT_EDGES},
        ).all()
    assert len(rows) == len(BIGINT_EDGES)
    assert [(v, new) for v, new, _ in rows] == [(v, old) for v, _, old in rows]
    assert {v: new for v, new, _ in rows}["9" * 18] == 10**18 - 1


SOR_ID, PARENT, SHAK = 100061000016005, 100011000016008, "1575"
DAY = dt.date(2024, 1, 1)


def _put(engine: Engine, table: str, pid: int, record: dict[str, Any]) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f'INSERT INTO krs."{table}" (pid, modified_at, token, record_namespace, record)'
            " VALUES (%s, now(), %s, 'urn:x', %s)",
            (pid, f"{1700000000:010d}{pid:010d}", Jsonb(record)),
        )


def test_the_views_follow_the_data_and_building_is_idempotent(engine: Engine) -> None:
    empty_replica(engine)
    mapping = default_mapping()
    assert not views.ensure(engine, mapping)  # nothing changed since empty_replica built them
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM sor.unit")).scalar_one() == 0
    _put(
        engine,
        "sor_v2_sorentity_v1",
        1,
        {"SorId": str(PARENT), "SorType": "IE", "EntityName": "Region", "FromDate": "2000-01-01"},
    )
    _put(
        engine,
        "sor_v2_sorentity_v1",
        2,
        {
            "SorId": str(SOR_ID),
            "SorType": "SI",
            "EntityName": "Sygehus",
            "FromDate": "2000-01-01",
            "InstitutionOwnerSorId": str(PARENT),
            "ShakId": SHAK,
            "ValidTo": "2999-12-31",
        },
    )
    # A row NSP no longer holds as current (its ValidTo has passed) is history, not a unit.
    _put(
        engine,
        "sor_v2_sorentity_v1",
        3,
        {
            "SorId": str(SOR_ID),
            "SorType": "SI",
            "EntityName": "Gammelt navn",
            "FromDate": "1990-01-01",
            "ValidTo": "2001-01-01T00:00:00+01:00",
        },
    )
    assert views.ensure(engine, mapping)  # SOR2 holds rows now: the views switch to it
    assert not views.ensure(engine, mapping)
    day = dt.date(2024, 1, 1)
    try:
        with engine.connect() as conn:
            assert [u.name for u in run(conn, q.by_shak(SHAK, day))] == ["Sygehus"]
            tree = run(conn, q.unit_tree(SOR_ID, day))
            assert tree is not None
            assert [a.sor_id for a in tree.ancestors] == [PARENT]
            assert [u.name for u in run(conn, q.history(SOR_ID))] == ["Sygehus"]
            assert conn.execute(text("SELECT count(*) FROM sor.sorentity")).scalar_one() == 3
    finally:
        empty_replica(engine)


PLANS = [
    ("sor id", q.UNIT, {"sor_id": SOR_ID}),
    ("shak", q.BY_SHAK, {"code": SHAK}),
    ("resolve json", q.RESOLVE_JSON, {"codes": f"{SHAK},157501", "day": DAY}),
    ("children", q.CHILDREN, {"sor_id": PARENT}),
    ("ancestors", q.TREE, q.tree_params(SOR_ID, DAY)),
    ("unit tree", q.TREE_WITH_CHILDREN, q.tree_params(SOR_ID, DAY)),
    ("ean", q.BY_EAN, {"gln": 5790001003432}),
    ("yder", q.BY_YDER, {"numbers": ["2001", "002001"]}),
]


@pytest.mark.parametrize(("name", "sql", "params"), PLANS, ids=[p[0] for p in PLANS])
def test_every_sor2_lookup_uses_indexes(
    engine: Engine, name: str, sql: str, params: dict[str, Any]
) -> None:
    empty_replica(engine)
    _put(engine, "sor_v2_sorentity_v1", 1, {"SorId": str(SOR_ID), "SorType": "SI"})
    _put(engine, "sor_v2_shaksormap_v1", 1, {"SorId": str(SOR_ID), "ShakId": SHAK})
    views.ensure(engine, default_mapping())
    try:
        with engine.connect() as conn:
            conn.execute(text("SET LOCAL enable_seqscan = off"))
            at = q.day_start(DAY)
            plan = "\n".join(row[0] for row in fetch(conn, "EXPLAIN " + sql, {**params, "at": at}))
            conn.rollback()
    finally:
        empty_replica(engine)
    # sor.resolve_item's branches for the other kinds sit behind a one-time filter that is
    # false once the kind is known, so their scans never run.
    lines = plan.splitlines()
    ungated = [
        line
        for above, line in zip(["", *lines], lines, strict=False)
        if "Seq Scan on sor_v2" in line and "One-Time Filter: false" not in above
    ]
    assert not ungated, plan
    assert "Index" in plan
