"""One answer for one (code, kind, date), whichever way it is asked (tracker issue #24).

The demo data (the bundled fictive snapshot, served by the built-in simulator over HTTP) is
synced into the test database twice: the v1 datatypes only, then v1 and SOR2 (the `sor` views
answer from SOR2 once it holds rows). Codes of every kind, and invalid ones, are asked on each
validity boundary of their units and SHAK mappings, read from the database: the day before
the first valid day, the first day, the last day and the day after (sor.unit's valid_to is the
start of the first day no longer valid: SOR2's ToDate is inclusive, docs/sor2.md).

Every way of asking is one function in WAYS, (context, cases) → one Outcome per case; the
single lookup routes are the reference. A new way is one more entry.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import Engine, text
from starlette.testclient import TestClient

from sorsync.datatypes import SOR2_DATATYPES, V1_DATATYPES
from sorsync.datatypes import lookup as datatype
from sorsync.db import views
from sorsync.krs.client import KrsClient
from sorsync.lookup import resolve as rs
from sorsync.lookup.query import run
from sorsync.mapping import default_mapping
from sorsync.simulator.server import serve_in_thread
from sorsync.sync import sync
from tests.fixtures.api import empty_replica
from tests.fixtures.simulator import AMBIGUOUS_SHAK, demo_store

INVALID = [
    ("shak", "AB!1"),
    ("shak", "12345"),
    ("sor", "123"),
    ("sor", "1234567890123"),
    ("ean", "5790000000013"),  # wrong GS1 check digit
    ("ydernummer", "12a"),
    ("ydernummer", "1234567890"),
]


@dataclass(frozen=True)
class Case:
    kind: str
    code: str
    day: dt.date


# (status, the answering units' SOR ids in order): status is found, ambiguous, not_found, invalid.
Outcome = tuple[str, tuple[str, ...]]


@dataclass(frozen=True)
class Context:
    client: TestClient
    engine: Engine


def _status(units: list[str]) -> str:
    return "not_found" if not units else "found" if len(units) == 1 else "ambiguous"


# --- the ways ----------------------------------------------------------------------------------

ROUTES = {
    "shak": "/v1/shak/{}",
    "sor": "/v1/sor/{}",
    "ean": "/v1/ean/{}",
    "ydernummer": "/v1/yder/{}",
}


def single_routes(ctx: Context, cases: list[Case]) -> list[Outcome]:
    out: list[Outcome] = []
    for c in cases:
        r = ctx.client.get(
            ROUTES[c.kind].format(quote(c.code, safe="")), params={"date": str(c.day)}
        )
        if r.status_code == 404:
            out.append(("not_found", ()))
        elif r.status_code == 422:
            out.append(("invalid", ()))
        else:
            assert r.status_code == 200, (c, r.text)
            body = r.json()
            ids = [body["sor_id"]] if c.kind == "sor" else [u["sor_id"] for u in body["units"]]
            out.append((_status(ids), tuple(ids)))
    return out


def resolve_json(ctx: Context, cases: list[Case]) -> list[Outcome]:
    items = [{"code": c.code, "kind": c.kind, "date": str(c.day)} for c in cases]
    out: list[Outcome] = []
    for start in range(0, len(items), 10_000):
        r = ctx.client.post("/v1/resolve", json={"items": items[start : start + 10_000]})
        assert r.status_code == 200, r.text
        for res in r.json()["results"]:
            out.append((res["status"], tuple(u["sor_id"] for u in res["units"])))
    return out


def resolve_csv(ctx: Context, cases: list[Case]) -> list[Outcome]:
    body = io.StringIO()
    writer = csv.writer(body, lineterminator="\n")
    writer.writerow(["code", "kind", "date"])
    writer.writerows([c.code, c.kind, str(c.day)] for c in cases)
    r = ctx.client.post(
        "/v1/resolve", content=body.getvalue().encode(), headers={"content-type": "text/csv"}
    )
    assert r.status_code == 200, r.text
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == len(cases)
    return [
        (row["status"], tuple(row["sor_id"].split(rs.JOIN)) if row["sor_id"] else ())
        for row in rows
    ]


def shak_resolve(ctx: Context, cases: list[Case]) -> list[Outcome | None]:
    """POST /v1/shak/resolve (SHAK only; one date a request): `found` may carry several units."""
    out: dict[int, Outcome] = {}
    for day in sorted({c.day for c in cases if c.kind == "shak"}):
        at = [n for n, c in enumerate(cases) if c.kind == "shak" and c.day == day]
        codes = [cases[n].code for n in at]
        r = ctx.client.post("/v1/shak/resolve", json={"codes": codes, "date": str(day)})
        assert r.status_code == 200, r.text
        for n, res in zip(at, r.json()["results"], strict=True):
            ids = tuple(u["sor_id"] for u in res["units"])
            status = res["status"] if res["status"] != "found" else _status(list(ids))
            out[n] = (status, ids)
    return [out.get(n) for n in range(len(cases))]


def sql_functions(ctx: Context, cases: list[Case]) -> list[Outcome | None]:
    """sor.shak_to_sor for SHAK codes, sor.resolve_code for the others. The functions take codes
    as given (no validation): an invalid code is not_found there."""
    out: list[Outcome | None] = []
    with ctx.engine.connect() as conn:
        for c in cases:
            if c.kind == "shak":
                sql, params = "SELECT * FROM sor.shak_to_sor(:code, :day)", {"code": c.code}
            else:
                sql = "SELECT * FROM sor.resolve_code(:kind, :code, :day)"
                params = {"kind": c.kind, "code": c.code}
            rows = conn.execute(text(sql), {**params, "day": c.day}).all()
            ids = tuple(str(r.sor_id) for r in rows if r.sor_id is not None)
            out.append((rows[0].status, ids))
    return out


def resolve_command(ctx: Context, cases: list[Case]) -> list[Outcome]:
    """`sorsync resolve` as an analyst runs it: a CSV on stdin against the replica, no API."""
    body = io.StringIO()
    writer = csv.writer(body, lineterminator="\n")
    writer.writerow(["code", "kind", "date"])
    writer.writerows([c.code, c.kind, str(c.day)] for c in cases)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SORSYNC_")}
    env["SORSYNC_DATABASE_URL"] = ctx.engine.url.render_as_string(hide_password=False)
    done = subprocess.run(
        [sys.executable, "-m", "sorsync", "resolve", "-"],
        input=body.getvalue().encode(),
        env=env,
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    rows = list(csv.DictReader(io.StringIO(done.stdout.decode())))
    assert len(rows) == len(cases)
    return [
        (row["status"], tuple(row["sor_id"].split(rs.JOIN)) if row["sor_id"] else ())
        for row in rows
    ]


Way = Callable[[Context, list[Case]], list[Outcome] | list[Outcome | None]]
WAYS: dict[str, Way] = {
    "POST /v1/resolve JSON": resolve_json,
    "POST /v1/resolve CSV": resolve_csv,
    "POST /v1/shak/resolve": shak_resolve,
    "SQL sor.shak_to_sor / sor.resolve_code": sql_functions,
    "sorsync resolve": resolve_command,
}


def expected(way: str, reference: Outcome) -> Outcome:
    if way.startswith("SQL") and reference[0] == "invalid":
        return ("not_found", ())
    return reference


# --- the data -----------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["v1", "sor2"])
def replica(request: pytest.FixtureRequest, engine: Engine) -> Iterator[str]:
    store = demo_store()  # with AMBIGUOUS_SHAK, which only the SOR2 datatypes carry
    keys = [*V1_DATATYPES, *(SOR2_DATATYPES if request.param == "sor2" else ())]
    dts = [datatype(key) for key in keys]
    handle = serve_in_thread(store)
    empty_replica(engine)
    try:
        with KrsClient(handle.url, timeout=60) as client:
            result = sync(engine, client, dts, kind="full")
        assert result.ok, result.error
        views.ensure(engine, default_mapping(), dts)
        with engine.connect() as conn:
            sources = set(conn.execute(text("SELECT DISTINCT datatype FROM sor.unit")).scalars())
        assert (sources == {"sor/v2/sorentity/v1"}) == (request.param == "sor2")
        yield request.param
    finally:
        handle.stop()
        empty_replica(engine)


def _boundaries(starts_ends: list[tuple[Any, Any]]) -> set[dt.date]:
    """The day before the first valid day, the first day, the last day and the day after, for
    each (valid_from, valid_to) as local dates; valid_to is exclusive (the day after)."""
    days: set[dt.date] = set()
    for start, end in starts_ends:
        if start is not None:
            days |= {start - dt.timedelta(days=1), start}
        if end is not None:
            days |= {end - dt.timedelta(days=1), end}
    return days


LOCAL = "AT TIME ZONE 'Europe/Copenhagen'"


def _cases(engine: Engine) -> list[Case]:
    today = dt.datetime.now(dt.UTC).date()
    with engine.connect() as conn:

        def rows(sql: str) -> list[Any]:
            return list(conn.execute(text(sql)))

        picked: list[tuple[str, str]] = []
        # SHAK codes whose mapping or unit has an end, the ambiguous one, and a few open ones.
        picked += [
            ("shak", r[0])
            for r in rows(
                "SELECT shak FROM (SELECT DISTINCT shak FROM sor.shak_map"
                " WHERE valid_to IS NOT NULL"
                f" OR shak = '{AMBIGUOUS_SHAK}') s ORDER BY shak LIMIT 12"
            )
        ]
        picked += [
            ("shak", r[0])
            for r in rows(
                "SELECT DISTINCT shak FROM sor.shak_map WHERE valid_to IS NULL"
                " ORDER BY shak LIMIT 4"
            )
        ]
        picked += [
            ("sor", str(r[0]))
            for r in rows(
                "SELECT sor_id FROM (SELECT DISTINCT sor_id FROM sor.unit"
                " WHERE valid_to IS NOT NULL)"
                " s ORDER BY sor_id LIMIT 8"
            )
        ]
        picked += [
            ("sor", str(r[0]))
            for r in rows("SELECT DISTINCT sor_id FROM sor.unit ORDER BY sor_id LIMIT 3")
        ]
        # EANs a parent and its children share, and single ones.
        picked += [
            ("ean", str(r[0]))
            for r in rows(
                "SELECT ean FROM sor.unit WHERE ean IS NOT NULL GROUP BY ean"
                " ORDER BY count(DISTINCT sor_id) > 1 DESC, bool_or(valid_to IS NOT NULL) DESC, ean"
                " LIMIT 8"
            )
        ]
        picked += [("ydernummer", r[0]) for r in rows(
            "SELECT ydernummer FROM sor.unit WHERE ydernummer IS NOT NULL GROUP BY ydernummer"
            " ORDER BY bool_or(valid_to IS NOT NULL) DESC, ydernummer LIMIT 5")]  # fmt: skip
        assert {k for k, _ in picked} == {"shak", "sor", "ean", "ydernummer"}
        cases: list[Case] = []
        for kind, code in picked:
            where = {
                "shak": "u.sor_id IN (SELECT m.sor_id FROM sor.shak_map m WHERE m.shak = :c)",
                "sor": "u.sor_id = CAST(:c AS bigint)",
                "ean": "u.ean = CAST(:c AS bigint)",
                "ydernummer": "u.ydernummer = :c",
            }[kind]
            spans = conn.execute(
                text(
                    f"SELECT (valid_from {LOCAL})::date, (valid_to {LOCAL})::date"
                    f" FROM sor.unit u WHERE {where}"
                ),
                {"c": code},
            ).all()
            if kind == "shak":
                spans = [
                    *spans,
                    *conn.execute(
                        text(
                            f"SELECT (valid_from {LOCAL})::date, (valid_to {LOCAL})::date"
                            " FROM sor.shak_map WHERE shak = :c"
                        ),
                        {"c": code},
                    ).all(),
                ]
            days = _boundaries([(s, e) for s, e in spans]) | {today}
            cases += [Case(kind, code, day) for day in sorted(days)]
            if kind == "shak":
                cases.append(Case(kind, code.lower(), today))  # typed in lower case
            if kind == "ydernummer":
                cases.append(Case(kind, code.zfill(9), today))  # with leading zeros
    for kind, code in INVALID:
        cases.append(Case(kind, code, today))
    cases += [Case("shak", "Q9Q9", today), Case("sor", "99999991000016009", today)]
    return cases


def test_every_way_gives_the_same_answer(
    api_client: TestClient, engine: Engine, replica: str
) -> None:
    cases = _cases(engine)
    ctx = Context(api_client, engine)
    reference = single_routes(ctx, cases)
    statuses = {o[0] for o in reference}
    assert {"found", "not_found", "invalid"} <= statuses, statuses
    if replica == "sor2":
        assert "ambiguous" in statuses
    mismatches = []
    for way, answer in WAYS.items():
        got = answer(ctx, cases)
        assert len(got) == len(cases), way
        for case, want, have in zip(cases, reference, got, strict=True):
            if have is not None and have != expected(way, want):
                mismatches.append(f"{way}: {case} → {have}, single lookup {want}")
    assert not mismatches, "\n".join(mismatches[:40])


def test_a_codes_timeline_answers_every_day_as_sor_resolve_does(
    engine: Engine, replica: str
) -> None:
    # The streams answer from sor.resolve_timeline, one query per code. Every day on which any
    # unit (hospitals and practices included) or SHAK mapping starts or ends, and the days
    # around it, asked of sor.resolve directly: the same answer as the code's timeline gives.
    codes = sorted({(c.kind, c.code) for c in _cases(engine)})
    with engine.connect() as conn:
        spans = conn.execute(
            text(
                f"SELECT (valid_from {LOCAL})::date, (valid_to {LOCAL})::date FROM sor.unit"
                f" UNION SELECT (valid_from {LOCAL})::date, (valid_to {LOCAL})::date"
                " FROM sor.shak_map"
            )
        ).all()
        days = sorted(_boundaries([(s, e) for s, e in spans]) | {dt.date(1900, 1, 1)})
        valid = [c for c in codes if rs.item(c[0], c[1], None, days[0]).problem is None]
        keys = [(kind, code, day) for kind, code in valid for day in days]
        want = run(conn, rs.resolve_query(keys))
        timelines = run(conn, rs.timeline_query(valid))
    assert {kind for kind, _ in valid} == {"shak", "sor", "ean", "ydernummer"}
    assert len(keys) > 5_000
    differ = [
        (key, want[key].status, timelines[key[:2]].on(key[2]))
        for key in keys
        if (want[key].status, want[key].units) != timelines[key[:2]].on(key[2])
    ]
    assert not differ, differ[:10]
