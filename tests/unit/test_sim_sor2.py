"""SOR2 in the simulator: records built from a SorTree, versions per SorId, rendering (element
names of the mapping, omitted NULLs, dates, coordinates inside Denmark) and the record shape."""

from __future__ import annotations

import io
import re
import time
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from lxml import etree

from sorsync.datatypes import SOR2_DATATYPES, SOR_NAMESPACE, lookup
from sorsync.krs.feed import parse_feed
from sorsync.mapping import DEFAULTS
from sorsync.simulator import render
from sorsync.simulator.generator import SnapshotModel, evolve, generate, write_sortree
from sorsync.simulator.importer import END_OF_TIME, load_snapshot
from sorsync.simulator.sor2 import (
    E_RANGE,
    ELEMENTS,
    N_RANGE,
    REPLACED,
    SHAKSORMAP,
    SORENTITY,
    RecordShape,
    ShapeError,
    coordinates,
    fictive_cvr,
)
from sorsync.simulator.store import Row, Store

CPH = ZoneInfo("Europe/Copenhagen")
ENTITY = lookup(SORENTITY)
ATOM = "{http://www.w3.org/2005/Atom}"


def snapshot(model: SnapshotModel) -> io.BytesIO:
    out = io.BytesIO()
    write_sortree(model, out)
    out.seek(0)
    return out


@pytest.fixture(scope="module")
def loaded() -> tuple[Store, SnapshotModel]:
    store = Store()
    model = generate(600, seed=8)
    load_snapshot(store, snapshot(model), at=datetime(2025, 1, 6, 1, 0, tzinfo=CPH))
    return store, model


def rows(store: Store, key: str) -> list[Row]:
    return list(store.table(key))


def records(store: Store, key: str, shape: RecordShape | None = None) -> list[etree._Element]:
    """The records of one rendered page, as elements."""
    dt = lookup(key)
    page = store.table(key).page((0, 0), 2000)
    layout = (shape or store.shape).layout(key)
    feed = etree.fromstring(render.render_feed(dt, page, layout=layout).encode())
    return [entry.find(f"{ATOM}content")[0] for entry in feed.iter(f"{ATOM}entry")]  # type: ignore[index]


def local(tag: object) -> str:
    return str(tag).rpartition("}")[2]


def test_element_names_are_the_mappings(loaded: tuple[Store, SnapshotModel]) -> None:
    store, _ = loaded
    for role, mapping in DEFAULTS.items():
        known = {f.element for f in mapping.fields}
        seen: set[str] = set()
        for record in records(store, mapping.key):
            assert local(record.tag) == role
            assert etree.QName(record).namespace == SOR_NAMESPACE
            names = [local(child.tag) for child in record]
            assert len(names) == len(set(names))
            seen.update(names)
        assert seen, mapping.key
        assert seen <= known, seen - known
    entity_seen = {local(c.tag) for r in records(store, SORENTITY) for c in r}
    for name in (
        "SorId", "SorType", "EntityName", "EntityTypeName", "FromDate", "FirstFromDate", "ToDate",
        "ShakId", "OrganisationalLevelCode", "OrganisationalLevelName", "ValidFrom", "ValidTo",
        "UniqueCurrentKey", "ParentSorId", "HealthInstitutionSorId",
        "HealthInstitutionEntityName", "HealthInstitutionEntityTypeName", "InstitutionOwnerSorId",
        "InstitutionOwnerEntityName", "InstitutionOwnerEntityTypeName",
        "InstitutionOwnerCvrNumberId", "EanLocationCode", "EanLocationCodeRegionName",
        "ProviderId", "PharmacyId", "VirtualAddressTelephoneNumber", "PostalAddressStreetName",
        "PostalAddressPostCodeId", "PostalAddressCoordETRS89z32EMeasure",
        "VisitingAddressCoordETRS89z32NMeasure", "ActivityAddressDistrictName",
        "PrioritizedEntitySpeciality1Id", "PrioritizedEntitySpeciality1Name",
    ):  # fmt: skip
        assert name in entity_seen, name


def test_one_row_per_unit_at_every_level_and_nulls_omitted(
    loaded: tuple[Store, SnapshotModel],
) -> None:
    store, model = loaded
    units = {u.sor_id: u for u in model.units()}
    entity_rows = rows(store, SORENTITY)
    assert {r.values["SorId"] for r in entity_rows} == set(units)
    assert {r.values["SorType"] for r in entity_rows} == {"IE", "SI", "OE"}
    for record in records(store, SORENTITY):
        for child in record:
            assert child.text, f"an empty element {local(child.tag)} instead of an omitted one"
        names = {local(c.tag) for c in record}
        sor_type = record.findtext(f"{{{SOR_NAMESPACE}}}SorType")
        if sor_type == "IE":
            assert "ParentSorId" not in names
            assert "HealthInstitutionSorId" not in names
        else:
            assert "ParentSorId" in names
    # the hierarchy is flattened into each row: direct parent, institution and owner
    parents = {child.sor_id: u.sor_id for u in units.values() for child in u.children}
    for row in entity_rows:
        unit = units[row.values["SorId"]]  # type: ignore[index]
        assert row.values.get("ParentSorId") == parents.get(unit.sor_id)
        if unit.level == "OE":
            assert row.values["HealthInstitutionSorId"] != row.values["SorId"]
        assert re.fullmatch(r"[0-9]{8}", str(row.values["InstitutionOwnerCvrNumberId"]))
    replaced = {(r.values["SorId"], r.values["ReplacedBySorId"]) for r in rows(store, REPLACED)}
    assert replaced == {(u.sor_id, new) for u in units.values() for new in u.replaced_by or ()}
    assert replaced
    shak_rows = rows(store, SHAKSORMAP)
    assert {(r.values["ShakId"], r.values["SorId"]) for r in shak_rows} == {
        (u.shak, u.sor_id) for u in units.values() if u.shak
    }


def test_dates_iso_or_date_times_and_validity(loaded: tuple[Store, SnapshotModel]) -> None:
    store, _ = loaded
    timed = plain = 0
    for record in records(store, SORENTITY):
        values = {local(c.tag): c.text or "" for c in record}
        from_date = values["FromDate"]
        if len(from_date) == 10:
            plain += 1
            date.fromisoformat(from_date)
        else:
            timed += 1
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT00:00:00\+0[12]:00", from_date), from_date
        if "ToDate" in values:
            assert values["ToDate"][:10] >= from_date[:10]
        assert values["ValidFrom"] == "2025-01-06T01:00:00.000+01:00"  # the import's time
        assert values["ValidTo"] == "2999-12-31T00:00:00.000+01:00"
    assert timed > 0
    assert plain > timed * 3  # mixed: every 5th row
    for style, pattern in (("date", r"\d{4}-\d\d-\d\d"), ("datetime", r".{10}T00:00:00\+0[12]:00")):
        shape = RecordShape(dates=style)  # type: ignore[arg-type]
        for record in records(store, SORENTITY, shape)[:50]:
            assert re.fullmatch(pattern, record.findtext(f"{{{SOR_NAMESPACE}}}FromDate") or "")
    # the Danish offset of the day itself: summer dates are +02:00
    dates = render._DateCache(CPH)
    assert dates.fmt(date(2024, 7, 1), True) == "2024-07-01T00:00:00+02:00"
    assert dates.fmt(date(2024, 1, 1), True) == "2024-01-01T00:00:00+01:00"
    assert dates.fmt(date(2024, 1, 1), False) == "2024-01-01"


def test_coordinates_inside_denmark_and_stable(loaded: tuple[Store, SnapshotModel]) -> None:
    store, _ = loaded
    seen = 0
    for row in rows(store, SORENTITY):
        for prefix in ("PostalAddress", "VisitingAddress", "ActivityAddress"):
            east = row.values.get(prefix + "CoordETRS89z32EMeasure")
            north = row.values.get(prefix + "CoordETRS89z32NMeasure")
            if east is None:
                continue
            seen += 1
            assert isinstance(east, str)
            assert isinstance(north, str)
            assert re.fullmatch(r"\d{6}\.\d\d", east)
            assert re.fullmatch(r"\d{7}\.\d\d", north)
            assert E_RANGE[0] <= float(east) <= E_RANGE[1]
            assert N_RANGE[0] <= float(north) <= N_RANGE[1]
    assert seen > 100
    assert coordinates("2100", "Testvej", "1") == coordinates("2100", "Testvej", "1")
    copenhagen, aalborg = coordinates("2100", "A", "1"), coordinates("9000", "A", "1")
    assert float(copenhagen[0]) > float(aalborg[0])  # Zealand lies east of North Jutland
    assert float(copenhagen[1]) < float(aalborg[1])
    assert coordinates(None, None, None)[0]  # an unknown postcode still lands inside Denmark


def test_fictive_cvr_passes_modulus_11() -> None:
    weights = (2, 7, 6, 5, 4, 3, 2, 1)
    for seed in (0, 1, 100011000016008, 987654321):
        cvr = fictive_cvr(seed)
        assert len(cvr) == 8
        assert sum(int(d) * w for d, w in zip(cvr, weights, strict=True)) % 11 == 0


def test_versions_per_sor_id_over_two_snapshots() -> None:
    store = Store()
    model = generate(500, seed=4)
    first_at = datetime(2025, 1, 6, 1, 0, tzinfo=CPH)
    load_snapshot(store, snapshot(model), at=first_at)
    table = store.table(SORENTITY)
    before = {r.pid: (r.modified, dict(r.values)) for r in table}
    units = {u.sor_id: u for u in model.units()}
    # a unit that vanishes from the next snapshot
    gone = next(u for u in model.units() if u.level == "OE" and not u.children and not u.to_date)
    for parent in model.units():
        if gone in parent.children:
            parent.children.remove(gone)
    evolve(model, 21, seed=4)
    report = load_snapshot(store, snapshot(model), at=first_at + timedelta(days=1))
    counts = report.counts[SORENTITY]
    assert counts.inserted > 0
    assert counts.updated > 0
    assert counts.closed == 1
    new_units = {u.sor_id: u for u in model.units()}
    now = datetime.fromtimestamp(report.modified, CPH)
    for sor_id, unit in new_units.items():
        versions = sorted(table.versions(sor_id), key=lambda r: r.values["FromDate"])  # type: ignore[arg-type,return-value]
        latest = versions[-1]
        assert latest.values["FromDate"] == unit.from_date
        assert latest.values.get("ToDate") == unit.to_date
        assert latest.values["EntityName"] == unit.name
        if sor_id not in units:
            assert len(versions) == 1  # a new unit
            assert latest.pid not in before
        elif len(versions) > 1:
            # a new FromDate: a new row, and the old version ends the day before
            old = versions[-2]
            assert latest.pid not in before
            assert old.pid in before
            assert old.values["ToDate"] == unit.from_date - timedelta(days=1)
            assert old.modified == report.modified  # rewritten in place: delivered again
            assert old.values["ValidTo"] == END_OF_TIME  # history, not superseded
        elif latest.modified == report.modified:
            # same FromDate, other content: the same PID with a new token
            assert latest.pid in before
            assert latest.values != before[latest.pid][1]
            assert latest.values["ValidFrom"] == now
        else:
            assert latest.values == before[latest.pid][1]
    (closed,) = table.versions(gone.sor_id)
    assert closed.values["ToDate"] == model.snapshot_date - timedelta(days=1)
    assert closed.modified == report.modified
    replaced = rows(store, REPLACED)
    assert report.counts[REPLACED].inserted > 0, "evolve closes units with a successor"
    for row in replaced:
        old_id, new_id = row.values["SorId"], row.values["ReplacedBySorId"]
        assert isinstance(old_id, int)
        assert isinstance(new_id, int)
        old_unit, new_unit = new_units[old_id], new_units[new_id]
        assert new_unit.sor_id in (old_unit.replaced_by or ())
        assert row.values["ReplacementDate"] == old_unit.to_date + timedelta(days=1)  # type: ignore[operator]
    # the same snapshot again writes nothing
    again = load_snapshot(store, snapshot(model), at=first_at + timedelta(days=2))
    for key in SOR2_DATATYPES:
        assert again.counts[key].written == 0, key


def test_shape_renames_drops_adds_and_namespace(loaded: tuple[Store, SnapshotModel]) -> None:
    store, _ = loaded
    shape = RecordShape.from_options(
        namespace="urn:example:other",
        rename=["sorentity:EntityName=Name", "shaksormap:ShakId=Shak"],
        drop=["sorentity:ParentSorId"],
        add=["sorentity:NewField=a < b", "sorentity:Second=2"],
    )
    plain = records(store, SORENTITY)
    shaped = records(store, SORENTITY, shape)
    for before, after in zip(plain, shaped, strict=True):
        assert etree.QName(after).namespace == "urn:example:other"
        names_before = [local(c.tag) for c in before]
        names_after = [local(c.tag) for c in after]
        expected = [
            "Name" if n == "EntityName" else n for n in names_before if n != "ParentSorId"
        ] + ["NewField", "Second"]
        assert names_after == expected
        assert after[-2].text == "a < b"
    shak = records(store, SHAKSORMAP, shape)[0]
    assert next(local(c.tag) for c in shak) == "Shak"
    assert RecordShape.from_json(shape.to_json()) == shape
    assert shape.to_json()["datatypes"]["sorentity"]["drop"] == ["ParentSorId"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rename": ["sorentity:EntityName"]}, "write it like"),
        ({"rename": ["nosuch:EntityName=X"]}, "not a SOR2 datatype"),
        ({"drop": ["sorentity:NoSuchField"]}, "renders no element"),
        ({"add": ["sorentity:1bad=x"]}, "not a usable XML element name"),
        ({"dates": "often"}, "date style"),
        ({"namespace": "has space"}, "without spaces"),
    ],
)
def test_bad_shape_options_say_what_is_wrong(options: dict[str, object], message: str) -> None:
    with pytest.raises(ShapeError, match=message):
        RecordShape.from_options(**options)  # type: ignore[arg-type]


def test_rendered_page_parses_as_a_document_feed(loaded: tuple[Store, SnapshotModel]) -> None:
    store, _ = loaded
    page = store.table(SORENTITY).page((0, 0), 2000)
    xml = render.render_feed(ENTITY, page, layout=store.shape.layout(SORENTITY))
    assert "<atom:id>tag:nsi.dk,2011:sor/v2/sorentity/v1</atom:id>" in xml
    parsed = parse_feed(xml.encode(), ENTITY)
    assert len(parsed.entries) == len(page)
    namespace, record = parsed.entries[0].values
    assert namespace == SOR_NAMESPACE
    assert isinstance(record, dict)
    assert set(record) <= set(ELEMENTS[SORENTITY])


def test_a_2000_record_page_renders_in_tens_of_milliseconds() -> None:
    store = Store()
    load_snapshot(store, snapshot(generate(2100, seed=1)))
    page = store.table(SORENTITY).page((0, 0), 2000)
    assert len(page) == 2000
    layout = store.shape.layout(SORENTITY)
    best = min(_timed(lambda: render.render_entries(ENTITY, page, layout=layout)) for _ in range(3))
    assert best < 0.25, f"{best * 1000:.0f} ms for 2000 sorentity records"


def _timed(call: object) -> float:
    assert callable(call)
    started = time.perf_counter()
    call()
    return time.perf_counter() - started
