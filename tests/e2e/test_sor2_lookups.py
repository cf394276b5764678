"""SOR2 end to end through the lookups: simulator (real HTTP on 127.0.0.1) → `sorsync.sync` →
PostgreSQL → the `sor` views built from the mapping → the API and FHIR.

One fictive tree (300 units, then a night of 40 changes) feeds both the v1 views and SOR2; the
`sor` views answer from SOR2 once it holds rows. Two SHAK mappings are added to the source with
known validity so that every boundary day can be asked about.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import pytest
from pyproj import Transformer
from sqlalchemy import Engine, text
from starlette.testclient import TestClient

from sorsync import lookup
from sorsync.datatypes import SOR2_DATATYPES, V1_DATATYPES
from sorsync.datatypes import lookup as datatype
from sorsync.db import views
from sorsync.krs.client import KrsClient
from sorsync.mapping import default_mapping
from sorsync.simulator.generator import evolve, generate, write_sortree
from sorsync.simulator.importer import load_snapshot
from sorsync.simulator.server import SimulatorHandle, serve_in_thread
from sorsync.simulator.sor2 import SHAKSORMAP, SORENTITY
from sorsync.simulator.store import Store
from sorsync.sync import sync
from tests.fixtures.api import empty_replica
from tests.fixtures.simulator import add_rows

DATATYPES = [datatype(key) for key in (*V1_DATATYPES, *SOR2_DATATYPES)]
SHAK = "ZZ01"  # a code of ours: mapped to unit A for 2020-03-01..2021-06-30, then to unit B


@dataclass(frozen=True)
class World:
    handle: SimulatorHandle
    first: int  # SOR id SHAK maps to first
    second: int  # … and from 2021-07-01


def _load(store: Store) -> None:
    model = generate(300, seed=11)
    for snapshot in (model, evolve(model, 40, seed=12)):
        buffer = io.BytesIO()
        write_sortree(snapshot, buffer)
        buffer.seek(0)
        load_snapshot(store, buffer)


@pytest.fixture(scope="module")
def world(engine: Engine) -> Iterator[World]:
    store = Store()
    _load(store)
    # Two departments valid throughout (the answer is the units valid on the day asked).
    departments = sorted(
        int(str(row.values["SorId"]))
        for row in store.table(SORENTITY)
        if row.values.get("SorType") == "OE"
        and row.values.get("ShakId")
        and str(row.values["FromDate"])[:10] < "2020-01-01"
        and row.values.get("ToDate") is None
    )
    first, second = departments[0], departments[1]
    # The second row's FromDate is a date-time with an offset, as NSP may write it.
    add_rows(
        store,
        SHAKSORMAP,
        [
            {"ShakId": SHAK, "SorId": str(first), "FromDate": "2020-03-01", "ToDate": "2021-06-30"},
            {"ShakId": SHAK, "SorId": str(second), "FromDate": "2021-07-01T00:00:00+02:00"},
        ],
    )
    handle = serve_in_thread(store)
    empty_replica(engine)
    try:
        with KrsClient(handle.url, timeout=30) as client:
            result = sync(engine, client, DATATYPES, kind="full")
        assert result.ok, result.error
        assert views.ensure(engine, default_mapping(), DATATYPES)
        yield World(handle, first, second)
    finally:
        handle.stop()
        empty_replica(engine)


def _units(client: TestClient, path: str) -> list[dict[str, Any]]:
    answer = client.get(path)
    if answer.status_code == 404:
        return []
    assert answer.status_code == 200, answer.text
    units: list[dict[str, Any]] = answer.json()["units"]
    return units


def test_the_views_answer_from_sor2(engine: Engine, world: World) -> None:
    with engine.connect() as conn:
        sources = conn.execute(text("SELECT DISTINCT datatype FROM sor.unit")).scalars().all()
        kinds = set(conn.execute(text("SELECT DISTINCT sor_type FROM sor.unit")).scalars())
    assert sources == [SORENTITY]
    assert kinds == {"IE", "SI", "OE"}


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        ("2020-02-29", None),  # before the first mapping
        ("2020-03-01", "first"),  # its first day
        ("2021-06-30", "first"),  # its last day: SOR2's ToDate is inclusive
        ("2021-07-01", "second"),  # the day after: the next mapping
        (None, "second"),  # today
    ],
)
def test_shak_to_sor_on_every_boundary_day(
    api_client: TestClient, engine: Engine, world: World, day: str | None, expected: str | None
) -> None:
    query = "" if day is None else f"?date={day}"
    found = [u["sor_id"] for u in _units(api_client, f"/v1/shak/{SHAK}{query}")]
    want = [] if expected is None else [str(getattr(world, expected))]
    assert found == want
    # The batch and the lookup functions give the same answer.
    on = date.fromisoformat(day) if day else lookup.today()
    batch = api_client.post("/v1/shak/resolve", json={"codes": [SHAK], "date": day}).json()
    assert [u["sor_id"] for u in batch["results"][0]["units"]] == want
    with engine.connect() as conn:
        assert [str(u.sor_id) for u in lookup.run(conn, lookup.by_shak(SHAK, on))] == want


def test_a_unit_has_its_ancestors_through_oe_si_ie_and_its_level(
    api_client: TestClient, engine: Engine, world: World
) -> None:
    with engine.connect() as conn:
        deep = conn.execute(
            text(
                "SELECT c.sor_id FROM sor.sorentity c JOIN sor.sorentity p"
                " ON p.sor_id = c.parent_sor_id AND p.sor_type = 'OE'"
                " WHERE c.sor_type = 'OE' ORDER BY c.sor_id LIMIT 1"
            )
        ).scalar_one()
    body = api_client.get(f"/v1/sor/{deep}").json()
    chain = [body["sor_type"], *(a["sor_type"] for a in body["ancestors"])]
    assert chain[:2] == ["OE", "OE"]
    assert chain[-2:] == ["SI", "IE"]
    assert body["organisational_level"]["name"]
    assert body["health_institution"]["sor_id"] == body["ancestors"][-2]["sor_id"]
    assert body["institution_owner"]["cvr"]
    parent = api_client.get(f"/v1/sor/{body['ancestors'][0]['sor_id']}").json()
    assert str(deep) in parent["children"]


def test_a_closed_unit_names_its_successor(
    api_client: TestClient, engine: Engine, world: World
) -> None:
    with engine.connect() as conn:
        old, new = conn.execute(
            text(
                "SELECT sor_id, replaced_by_sor_id FROM sor.sorreplacedentity"
                " ORDER BY sor_id LIMIT 1"
            )
        ).one()
    versions = api_client.get(f"/v1/sor/{old}/history").json()["versions"]
    assert str(new) in versions[-1]["replaced_by"]


def test_wgs84_is_within_a_metre_of_the_etrs89_point(api_client: TestClient, world: World) -> None:
    page = api_client.get("/v1/units?kind=sygehusafdeling&limit=20").json()["items"]
    points = [
        (address["coordinates"], unit["sor_id"])
        for unit in page
        for address in (unit["addresses"] or {}).values()
        if address.get("coordinates")
    ]
    assert points
    back = Transformer.from_crs("EPSG:4326", "EPSG:25832", always_xy=True)
    for where, sor_id in points:
        e, n = back.transform(where["lon"], where["lat"])
        assert math.hypot(e - where["etrs89_e"], n - where["etrs89_n"]) < 1.0, sor_id
        assert 54.5 < where["lat"] < 57.8  # Denmark
        assert 8.0 < where["lon"] < 15.3


def test_fhir_read_and_search_carry_sor2(api_client: TestClient, world: World) -> None:
    sor_id = world.first
    org = api_client.get(f"/fhir/Organization/{sor_id}").json()
    systems = {c["system"] for t in org["type"] for c in t["coding"]}
    assert "https://sorsync.dev/fhir/CodeSystem/sor-type" in systems
    assert "https://sorsync.dev/fhir/CodeSystem/sor-organisational-level" in systems
    assert org["partOf"]["reference"].startswith("Organization/")
    assert any(a.get("extension") for a in org["address"])
    bundle = api_client.get(
        f"/fhir/Organization?identifier=urn:oid:1.2.208.176.1.1|{sor_id}"
    ).json()
    assert [e["resource"]["id"] for e in bundle["entry"]] == [str(sor_id)]
