"""The lookups as Queries, without a database: what each builds (SQL, parameters) and how its
shaping turns rows into the answer; multi-step lookups (Steps) fed rows by hand."""

from __future__ import annotations

import datetime as dt
import gc
from typing import Any

import pytest

from sorsync import lookup
from sorsync.lookup import resolve as rs
from sorsync.lookup import units as q
from sorsync.lookup.query import Query, Rows, Steps
from sorsync.lookup.status import DATA_VERSION, NO_VERSION, DataVersion

DAY = dt.date(2025, 6, 1)
SECTION, DEPARTMENT, HOSPITAL = 3_000_000_016_004, 2_000_000_016_004, 1_000_000_016_004
STAMP = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def unit_row(sor_id: int, parent: int | None = None, name: str = "x") -> tuple[Any, ...]:
    """A row of the unit columns (COLUMNS), as PostgreSQL would send it."""
    values: dict[str, Any] = dict.fromkeys(q.Unit._fields)
    values.update(
        sor_id=sor_id, kind="sygehusafdeling", name=name, parent_sor_id=parent, pid=sor_id,
        modified_at=STAMP, datatype="sor/sygehusafdeling/v1",
    )  # fmt: skip
    return tuple(q.Unit(**values))


def drive(steps: Steps[Any], answers: list[Rows]) -> tuple[list[Query[Any]], Any]:
    """Run `steps` with `answers` as the rows of its queries in turn: (the queries, result)."""
    asked: list[Query[Any]] = []
    shaped: Any = None
    try:
        while True:
            query = steps.send(shaped)
            asked.append(query)
            shaped = query.shape(answers[len(asked) - 1])
    except StopIteration as done:
        return asked, done.value


def test_a_single_lookup_is_its_sql_parameters_and_shape() -> None:
    query = lookup.by_shak("8001", DAY)
    assert query.sql == q.BY_SHAK
    assert query.params == {"code": "8001", "at": lookup.day_start(DAY)}
    assert query.shape([unit_row(SECTION), unit_row(DEPARTMENT)]) == [
        q.Unit._make(unit_row(SECTION)),
        q.Unit._make(unit_row(DEPARTMENT)),
    ]
    assert lookup.resolved("ean", "5790000000012", DAY).sql == q.RESOLVED["ean"]
    assert lookup.by_ydernummer("019062", DAY).params["numbers"][:2] == ["19062", "019062"]
    assert lookup.unit(SECTION, DAY).shape([]) is None
    assert lookup.unit(SECTION, DAY).shape([unit_row(SECTION)]) == q.Unit._make(unit_row(SECTION))
    assert lookup.sor_id_known(SECTION).shape([(True,)]) is True
    assert lookup.sor_id_known(SECTION).shape([(False,)]) is False


def test_unit_tree_is_one_round_trip_shaped_into_path_and_children() -> None:
    query = lookup.unit_tree(SECTION, DAY)
    assert query.sql == q.TREE_WITH_CHILDREN
    assert query.params == q.tree_params(SECTION, DAY)
    children = [4_000_000_016_004]
    rows = [
        (*unit_row(SECTION, DEPARTMENT), children),
        (*unit_row(DEPARTMENT, HOSPITAL), None),
        (*unit_row(DEPARTMENT, HOSPITAL, name="second version"), None),  # bad data: shown once
        (*unit_row(HOSPITAL), None),
    ]
    tree = query.shape(rows)
    assert tree is not None
    assert tree.unit.sor_id == SECTION
    assert [(u.sor_id, u.name) for u in tree.ancestors] == [(DEPARTMENT, "x"), (HOSPITAL, "x")]
    assert tree.children == children
    assert query.shape([]) is None


def test_search_shapes_a_page_with_its_cursor() -> None:
    query = lookup.search(day=DAY, q="a_b", kind="praksis", limit=2)
    assert query.params["limit"] == 3  # one more than the page, to tell whether one follows
    assert query.params["pattern"] == "%a\\_b%"
    assert "u.kind = %(kind)s" in query.sql
    full = query.shape([unit_row(1), unit_row(2), unit_row(3)])
    assert [u.sor_id for u in full.items] == [1, 2]
    assert full.next_after == 2
    last = query.shape([unit_row(1)])
    assert last.next_after is None


def test_the_data_version_query_is_one_object() -> None:
    assert lookup.data_version() is lookup.data_version()
    assert lookup.data_version().sql == DATA_VERSION
    assert lookup.data_version().shape([]) == NO_VERSION
    assert lookup.data_version().shape([(7, STAMP)]) == DataVersion(7, STAMP)


def test_resolve_shak_asks_nothing_for_no_codes() -> None:
    assert drive(lookup.resolve_shak([], DAY), []) == ([], {})
    asked, found = drive(
        lookup.resolve_shak(["8001", "800120"], DAY),
        [[("8001", *unit_row(HOSPITAL)), ("8001", *unit_row(DEPARTMENT))]],
    )
    assert [a.sql for a in asked] == [q.RESOLVE]
    assert {code: [u.sor_id for u in units] for code, units in found.items()} == {
        "8001": [HOSPITAL, DEPARTMENT]
    }


def test_resolve_shak_json_sets_jit_off_then_asks_once() -> None:
    asked, found = drive(
        lookup.resolve_shak_json(["8001", "0000"], DAY), [[("",)], [("8001", '[{"a":1}]')]]
    )
    assert [a.sql for a in asked] == [q.JIT_OFF, q.RESOLVE_JSON]
    assert asked[1].params == {"codes": "8001,0000", "day": DAY}
    assert found == {"8001": '[{"a":1}]'}
    with pytest.raises(ValueError, match="comma"):
        drive(lookup.resolve_shak_json(["8001,0000"], DAY), [])


# sor.resolve_timeline's rows: ord, from_day, status, then the unit (ResolvedUnit)
def _piece(ord_: int, day: dt.date, status: str, sor_id: int | None = SECTION) -> tuple[Any, ...]:
    if sor_id is None:
        return (ord_, day, status, *[None] * 10)
    return (ord_, day, status, sor_id, "Afsnit", "sygehusafdeling", "1001", *[None] * 6)


def test_resolve_cached_asks_once_per_code_whatever_the_dates() -> None:
    cache = rs.TimelineCache()
    later = dt.date(2030, 1, 1)
    items = [
        rs.item("shak", "1001", None, DAY),
        rs.item("shak", "1002", None, DAY),
        rs.item("shak", "1001", later.isoformat(), DAY),
        rs.item("shak", "xx", None, DAY),
    ]
    # 1001 is found from 2020-01-01 until 2030-01-01, not before and not after; 1002 never.
    pieces = [
        _piece(1, dt.date(2019, 12, 31), "not_found", None),
        _piece(1, dt.date(2020, 1, 1), "found"),
        _piece(1, later, "not_found", None),
    ]
    asked, answers = drive(rs.resolve_cached(items, cache), [pieces])
    assert [a.sql for a in asked] == [rs.TIMELINE]
    assert asked[0].params == {"kinds": "shak,shak", "codes": "1001,1002"}
    assert [a.status for a in answers] == ["found", "not_found", "not_found", "invalid"]
    assert [u.sor_id for u in answers[0].units] == [SECTION]
    assert answers[2].item.day == later
    # Every code known now: no query at all, on any date (before the first piece too).
    early = [rs.item("shak", "1001", "1990-05-05", DAY), rs.item("shak", "1002", None, DAY)]
    asked, again = drive(rs.resolve_cached(early, cache), [])
    assert asked == []
    assert [a.status for a in again] == ["not_found", "not_found"]


def test_a_timeline_answers_each_day_from_the_piece_it_falls_in() -> None:
    rows = [
        _piece(1, dt.date(2019, 12, 31), "not_found", None),
        _piece(1, dt.date(2020, 1, 1), "found"),
        _piece(1, dt.date(2021, 1, 1), "ambiguous", SECTION),
        _piece(1, dt.date(2021, 1, 1), "ambiguous", DEPARTMENT),
    ]
    timeline = rs.group_timelines([("shak", "1001")], rows)[("shak", "1001")]
    assert timeline.starts == [dt.date(2019, 12, 31), dt.date(2020, 1, 1), dt.date(2021, 1, 1)]
    days = [dt.date(1900, 1, 1), dt.date(2019, 12, 31), dt.date(2020, 1, 1),
            dt.date(2020, 12, 31), dt.date(2021, 1, 1), dt.date(9999, 12, 31)]  # fmt: skip
    answers = [timeline.on(day) for day in days]
    assert [status for status, _ in answers] == [
        "not_found", "not_found", "found", "found", "ambiguous", "ambiguous",
    ]  # fmt: skip
    assert [u.sor_id for u in answers[-1][1]] == [SECTION, DEPARTMENT]


def test_resolve_keys_travel_as_texts_and_a_comma_in_a_code_is_refused() -> None:
    keys = [("shak", "1001", DAY), ("sor", "123", dt.date(2020, 2, 29))]
    assert rs.query_params(keys) == {
        "kinds": "shak,sor",
        "codes": "1001,123",
        "days": "2025-06-01,2020-02-29",
    }
    with pytest.raises(ValueError, match="comma"):
        rs.query_params([("shak", "10,01", DAY)])


def test_a_chunk_keeps_its_cached_timelines_while_another_chunk_evicts_them() -> None:
    # The API's streams have two chunks on the database at once (api/routes/resolve.py).
    cache = rs.TimelineCache(limit=2)
    found = _piece(1, DAY, "found")
    drive(rs.resolve_cached([rs.item("shak", "1001", None, DAY)], cache), [[found]])
    waiting = rs.resolve_cached([rs.item("shak", c, None, DAY) for c in ("1001", "1002")], cache)
    query = next(waiting)  # asks for 1002 only: 1001 is in the cache
    assert query.params["codes"] == "1002"
    # Meanwhile another chunk's timelines push 1001 out of the cache.
    drive(rs.resolve_cached([rs.item("shak", c, None, DAY) for c in ("1003", "1004")], cache), [[]])
    assert ("shak", "1001") not in cache.timelines
    with pytest.raises(StopIteration) as done:
        waiting.send(query.shape([]))
    assert [(a.item.code, a.status) for a in done.value.value] == [
        ("1001", "found"),
        ("1002", "not_found"),
    ]


def test_a_batch_process_collects_young_objects_less_often() -> None:
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        rs.collect_less_often()
        assert gc.get_threshold() == (rs.YOUNG_COLLECTION_EVERY, 10, 10)
        assert gc.get_freeze_count() > 0
        gc.set_threshold(50_000, 10, 10)  # a process tuned higher keeps its own
        rs.collect_less_often()
        assert gc.get_threshold()[0] == 50_000
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
