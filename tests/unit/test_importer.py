"""NSP's SOR import semantics: the mapping of the real samples field by field, NSP's quirks, and
every history rule (as a pure decision and with two successive snapshots through the Store)."""

from __future__ import annotations

import io
from datetime import date, datetime
from pathlib import Path

import pytest

from sorsync.datatypes import DATATYPES
from sorsync.simulator.generator import GenUnit, SnapshotModel, write_sortree
from sorsync.simulator.importer import (
    END_OF_TIME,
    TZ,
    Insert,
    Replace,
    SetValidFrom,
    SetValidTo,
    SnapshotImportError,
    close_missing,
    data_equal,
    decide,
    load_snapshot,
    overlapping,
    snapshot_time,
)
from sorsync.simulator.sortree import Address, SnapshotHeader, VirtualAddress
from sorsync.simulator.store import Row, Store

SAMPLES = Path(__file__).parent.parent / "data" / "sor-xml-samples"


def midnight(text: str) -> datetime:
    d = date.fromisoformat(text)
    return datetime(d.year, d.month, d.day, tzinfo=TZ)


def rows(store: Store, datatype: str) -> dict[int, dict[str, object]]:
    return {row.sor_nummer: row.values for row in store.table(f"sor/{datatype}/v1")}  # type: ignore[misc]


# --- the real samples, every record and field --------------------------------------------------


def test_one_sygehus_maps_like_nsp() -> None:
    store = Store()
    report = load_snapshot(store, SAMPLES / "ONE_SYGEHUS.xml")
    address = {
        "vejnavn": "Hestetorvet 8",  # inherited from the owner
        "postnummer": "4000",
        "bynavn": "Roskilde",
        "telefon": "46361266",
        "email": "J.Thulesen@dadlnet.dk",
        "www": "www.roskildeojenklinik.dk",
    }
    assert rows(store, "sygehus") == {
        347811000016004: {
            "sorNummer": 347811000016004,
            "nummer": "2529",
            "navn": "Roskilde Øjenklinik",
            **address,
            "validFrom": midnight("2009-10-08"),
            "validTo": END_OF_TIME,
        }
    }
    assert rows(store, "sygehusafdeling") == {
        347821000016008: {
            "sorNummer": 347821000016008,
            "sygehusSorNummer": 347811000016004,  # top level: directly under the hospital
            "underlagtSygehusSorNummer": 347811000016004,
            "afdelingTypeKode": 550811000005108,
            "afdelingTypeTekst": "administrativ enhed",
            "nummer": "252901",
            "navn": "Roskilde Øjenklinik, afdeling",
            **address,
            "validFrom": midnight("2009-10-07"),
            "validTo": END_OF_TIME,
        },
        347831000016005: {
            "sorNummer": 347831000016005,
            "overafdelingSorNummer": 347821000016008,  # a sub-unit: its parent department
            "underlagtSygehusSorNummer": 347811000016004,
            "afdelingTypeKode": 550851000005109,
            "afdelingTypeTekst": "klinisk enhed",
            "hovedSpecialeKode": "394594003",
            "hovedSpecialeTekst": "oftalmologi",
            "nummer": "2529010",
            "navn": "Roskilde Øjenklinik, beh. afsnit",
            **address,
            "validFrom": midnight("2009-10-08"),
            "validTo": END_OF_TIME,
        },
    }
    for other in ("praksis", "yder", "apotek"):
        assert rows(store, other) == {}
    assert report.counts["sor/sygehusafdeling/v1"].inserted == 2
    # one import = one ModifiedDate on every row
    assert {r.modified for t in store.tables.values() for r in t} == {report.modified}


def test_one_praksis_maps_like_nsp() -> None:
    store = Store()
    load_snapshot(store, SAMPLES / "ONE_PRAKSIS.xml")
    assert rows(store, "praksis") == {
        8331000016009: {
            "sorNummer": 8331000016009,
            "eanLokationsnummer": 5790000141227,  # inherited from the owner
            "regionCode": 1084,  # the owner's EAN block
            "navn": "Michael Filtenborg & co",
            "validFrom": midnight("1999-03-25"),
            "validTo": END_OF_TIME,
        }
    }
    assert rows(store, "yder") == {
        8341000016002: {
            "sorNummer": 8341000016002,
            "praksisSorNummer": 8331000016009,
            "eanLokationsnummer": 5790000141227,
            "nummer": "19062",  # "019062" without leading zeros
            "navn": "Michael Filtenborg",
            "vejnavn": "Vesterbrogade 21",
            "postnummer": "3250",
            "bynavn": "Gilleleje",
            "telefon": "48300204",
            "hovedSpecialeKode": "408443003",
            "hovedSpecialeTekst": "almen medicin",
            "validFrom": midnight("1999-03-25"),
            "validTo": END_OF_TIME,
        }
    }


def test_one_apotek_maps_like_nsp() -> None:
    store = Store()
    load_snapshot(store, SAMPLES / "ONE_APOTEK.xml")
    assert rows(store, "apotek") == {
        306031000016009: {
            "sorNummer": 306031000016009,
            "apotekNummer": 362,
            "filialNummer": 1,
            "eanLokationsnummer": 5790000173624,
            "navn": "Værløse Apotek",
            "vejnavn": "Bymidten 13",
            "postnummer": "3500",
            "bynavn": "Værløse",
            "telefon": "42482209",
            "validFrom": midnight("1995-02-20"),
            "validTo": END_OF_TIME,
        }  # cvr and pcvr are never set by NSP
    }
    assert rows(store, "praksis") == rows(store, "sygehus") == {}


# --- hand-made snapshots -----------------------------------------------------------------------

D0 = date(2024, 3, 1)


def unit(level: str, sor: int, name: str, kind: int | None = None, **kw: object) -> GenUnit:
    return GenUnit(level, sor, name, kind, date(2020, 1, 1), date(2020, 1, 1), date(2020, 1, 1),
                   **kw)  # type: ignore[arg-type]  # fmt: skip


def hospital_model() -> tuple[SnapshotModel, dict[str, GenUnit]]:
    owner = unit("IE", 1, "Region", 550881000005103, postal=Address("Ejervej", "1", None, None,
                 "9000", "Hyldebæk"), virtual=VirtualAddress(phone="11111111"))  # fmt: skip
    si = unit("SI", 2, "Hyldebæk Sygehus", 22232009, shak="1234")
    dept = unit("OE", 3, "Afdeling", 550851000005109, shak="123401", specialities=(394579002,))
    section = unit("OE", 4, "Afsnit", 550851000005109, shak="1234010",
                   specialities=(394579002, 394609007))  # fmt: skip
    team = unit("OE", 5, "Team uden SHAK", 550851000005109)
    lost = unit("OE", 6, "Afsnit under team", 550851000005109, shak="1234011")
    owner.children = [si]
    si.children = [dept]
    dept.children = [section, team]
    team.children = [lost]
    model = SnapshotModel(D0, [owner], 0, 100, 100, 100, 100)
    return model, {"owner": owner, "si": si, "dept": dept, "section": section, "team": team,
                   "lost": lost}  # fmt: skip


def load(store: Store, model: SnapshotModel) -> object:
    buffer = io.BytesIO()
    write_sortree(model, buffer)
    buffer.seek(0)
    return load_snapshot(store, buffer)


def test_units_without_shak_lose_their_whole_subtree() -> None:
    store = Store()
    model, _ = hospital_model()
    report = load(store, model)
    assert sorted(rows(store, "sygehusafdeling")) == [3, 4]  # not 5 (no SHAK), not 6 (below 5)
    assert report.hospital_units_skipped == 2  # type: ignore[attr-defined]


def test_quirks_last_speciality_visiting_address_todate() -> None:
    store = Store()
    model, u = hospital_model()
    u["section"].visiting = Address(street="Besøgsvej", postcode="9001")  # no building number
    u["section"].to_date = date(2024, 6, 30)
    u["dept"].postal = Address(street="Husvej")  # a postal address without building number
    load(store, model)
    section = rows(store, "sygehusafdeling")[4]
    # NSP keeps the last SpecialityCode it reads.
    assert (section["hovedSpecialeKode"], section["hovedSpecialeTekst"]) == ("394609007", "kirurgi")
    # Visiting address fields overwrite postal ones; missing ones are pushed down from the
    # parent field by field (so a street can meet an ancestor's building number).
    assert section["vejnavn"] == "Besøgsvej 1"
    assert section["postnummer"] == "9001"
    assert section["bynavn"] == "Hyldebæk"
    assert rows(store, "sygehusafdeling")[3]["vejnavn"] == "Husvej 1"
    # ToDate (last valid day) is stored at midnight, no day added.
    assert section["validTo"] == midnight("2024-06-30")


def test_missing_building_number_is_written_as_java_null() -> None:
    store = Store()
    model, u = hospital_model()
    u["owner"].postal = Address(street="Postboks", postcode="9000", district="Hyldebæk")
    load(store, model)
    assert rows(store, "sygehus")[2]["vejnavn"] == "Postboks null"


def test_practice_ydernummer_and_nested_units() -> None:
    owner = unit("IE", 10, "Læge", 550891000005100, ean=5790000141227, region_code=1082,
                 postal=Address("Lægevej", "2", None, None, "8000", "Egelund"),
                 virtual=VirtualAddress(phone="22222222"))  # fmt: skip
    si = unit("SI", 11, "Lægerne", 394761003, ean_inherited=True)
    yder = unit("OE", 12, "Læge A", provider_id="000", ean_inherited=True)
    nested = unit("OE", 13, "Under yder", provider_id="004711", ean_inherited=True)
    specialist_si = unit("SI", 14, "Speciallæge", 550671000005100)
    specialist = unit("OE", 15, "Speciallæge B", provider_id="012345", specialities=(394582007,))
    owner.children = [si, specialist_si]
    si.children = [yder]
    yder.children = [nested]
    specialist_si.children = [specialist]
    store = Store()
    report = load(store, SnapshotModel(D0, [owner], 0, 100, 100, 100, 100))
    yders = rows(store, "yder")
    assert sorted(yders) == [12, 15]  # NSP reads only the practice's direct units
    assert yders[12]["nummer"] == "0"  # "000": zeros stripped, a lone zero kept
    assert yders[12]["eanLokationsnummer"] == 5790000141227
    assert yders[15]["nummer"] == "12345"
    assert "eanLokationsnummer" not in yders[15]
    assert yders[15]["hovedSpecialeTekst"] == "dermato-venerologi"
    assert {k: v["regionCode"] for k, v in rows(store, "praksis").items()} == {11: 1082, 14: 1082}
    assert report.nested_units_ignored == 1  # type: ignore[attr-defined]


def test_bad_pharmacy_identifier_is_reported() -> None:
    owner = unit("IE", 20, "Apoteker", 550891000005100, postal=Address("A", "1"),
                 virtual=VirtualAddress(phone="1"))  # fmt: skip
    si = unit("SI", 21, "Apotek", 264372000)
    si.children = [unit("OE", 22, "Apotek", pharmacy_id="12;3")]
    owner.children = [si]
    with pytest.raises(SnapshotImportError, match="PharmacyIdentifier '12;3'"):
        load(Store(), SnapshotModel(D0, [owner], 0, 100, 100, 100, 100))


# --- history rules as a pure decision ----------------------------------------------------------

FIELDS = tuple(
    f.element
    for f in DATATYPES["sor/sygehus/v1"].fields
    if f.element not in ("validFrom", "validTo")
)


def rec(name: str, start: str, end: str | None = None) -> dict[str, object]:
    return {
        "sorNummer": 7,
        "navn": name,
        "validFrom": midnight(start),
        "validTo": midnight(end) if end else END_OF_TIME,
    }


def row(pid: int, name: str, start: str, end: str | None = None) -> Row:
    return Row(pid, 1, rec(name, start, end))


def test_no_overlapping_row_inserts() -> None:
    new = rec("A", "2024-01-01")
    assert decide([], new, FIELDS) == [Insert(new)]
    old = row(1, "A", "2020-01-01", "2023-01-01")
    assert overlapping([old], new) == []


def test_identical_writes_nothing() -> None:
    assert decide([row(1, "A", "2024-01-01")], rec("A", "2024-01-01"), FIELDS) == []


def test_same_interval_changed_data_updates_in_place() -> None:
    new = rec("B", "2024-01-01")
    assert decide([row(1, "A", "2024-01-01")], new, FIELDS) == [
        Replace(midnight("2024-01-01"), END_OF_TIME, new)
    ]


def test_later_validto_only_moves_validto_even_if_data_changed() -> None:
    old = row(1, "A", "2024-01-01", "2024-06-30")
    assert decide([old], rec("B", "2024-01-01"), FIELDS) == [
        SetValidTo(midnight("2024-01-01"), END_OF_TIME)
    ]


def test_earlier_validto_with_equal_data_closes_in_place() -> None:
    assert decide([row(1, "A", "2024-01-01")], rec("A", "2024-01-01", "2024-06-30"), FIELDS) == [
        SetValidTo(midnight("2024-01-01"), midnight("2024-06-30"))
    ]


def test_earlier_validto_with_changed_data_shifts_old_row_and_inserts() -> None:
    new = rec("B", "2024-01-01", "2024-06-30")
    assert decide([row(1, "A", "2024-01-01")], new, FIELDS) == [
        SetValidFrom(midnight("2024-01-01"), midnight("2024-06-30")),
        Insert(new),
    ]


def test_later_fromdate_with_changed_data_closes_old_and_inserts() -> None:
    new = rec("B", "2024-05-01")
    assert decide([row(1, "A", "2024-01-01")], new, FIELDS) == [
        SetValidTo(midnight("2024-01-01"), midnight("2024-05-01")),
        Insert(new),
    ]


def test_later_fromdate_with_equal_data_is_ignored() -> None:
    assert decide([row(1, "A", "2024-01-01")], rec("A", "2024-05-01"), FIELDS) == []


def test_row_ending_where_the_new_one_starts_is_out_of_range() -> None:
    old = row(1, "A", "2020-01-01", "2024-05-01")
    current = row(2, "B", "2024-05-01")
    new = rec("B", "2024-05-01")
    assert overlapping([current, old], new) == [old, current]  # by ValidTo
    assert decide([old, current], new, FIELDS) == []
    assert decide([old], new, FIELDS) == [Insert(new)]


def test_new_version_inside_old_one_splits_it() -> None:
    old = row(1, "A", "2024-01-01")
    new = rec("B", "2024-03-01", "2024-04-01")
    assert decide([old], new, FIELDS) == [
        Insert({**old.values, "validFrom": midnight("2024-04-01")}),
        SetValidTo(midnight("2024-01-01"), midnight("2024-03-01")),
        Insert(new),
    ]


def test_later_start_and_later_end_with_equal_data_extends() -> None:
    old = row(1, "A", "2024-01-01", "2024-06-30")
    assert decide([old], rec("A", "2024-03-01"), FIELDS) == [
        SetValidTo(midnight("2024-01-01"), END_OF_TIME)
    ]


def test_earlier_start_rules() -> None:
    old = row(1, "A", "2024-03-01", "2024-06-30")
    wider = rec("B", "2024-01-01")
    assert decide([old], wider, FIELDS) == [
        Replace(midnight("2024-03-01"), midnight("2024-06-30"), wider)
    ]
    assert decide([old], rec("A", "2024-01-01", "2024-04-01"), FIELDS) == [
        SetValidFrom(midnight("2024-03-01"), midnight("2024-01-01"))
    ]
    shorter = rec("B", "2024-01-01", "2024-04-01")
    assert decide([old], shorter, FIELDS) == [
        SetValidFrom(midnight("2024-03-01"), midnight("2024-04-01")),
        Insert(shorter),
    ]


def test_missing_unit_rows_still_valid_are_closed_at_the_snapshot_date() -> None:
    snapshot = midnight("2024-05-01")
    open_row = row(1, "A", "2024-01-01")
    ended = row(2, "A", "2020-01-01", "2023-01-01")
    assert close_missing([open_row, ended], snapshot) == [
        SetValidTo(midnight("2024-01-01"), snapshot)
    ]


def test_data_equal_follows_nsps_column_comparison() -> None:
    assert data_equal({"navn": " "}, {}, ["navn"])  # a blank string equals NULL
    assert data_equal({"eanLokationsnummer": 0}, {}, ["eanLokationsnummer"])  # getLong(NULL) = 0
    assert not data_equal({}, {"navn": "A"}, ["navn"])
    assert not data_equal({"navn": "A"}, {}, ["navn"])


# --- two successive snapshots through the Store -------------------------------------------------


def pids(store: Store, datatype: str) -> dict[int, list[tuple[int, int, object, object]]]:
    out: dict[int, list[tuple[int, int, object, object]]] = {}
    for r in store.table(f"sor/{datatype}/v1"):
        out.setdefault(r.sor_nummer, []).append(  # type: ignore[arg-type]
            (r.pid, r.modified, r.values["validFrom"], r.values["validTo"])
        )
    return out


def test_second_snapshot_produces_nsps_deltas() -> None:
    store = Store()
    model, u = hospital_model()
    first = load(store, model)
    before = pids(store, "sygehusafdeling")
    section_pid = before[4][0][0]

    day1 = date(2024, 3, 2)
    model.snapshot_date = day1
    u["dept"].name = "Afdeling, nyt navn"  # same FromDate: in-place update, same PID
    u["section"].name = "Afsnit, nyt navn"  # with a new FromDate: close old row, insert new
    u["section"].from_date = day1
    u["si"].to_date = date(2024, 12, 31)  # closing with equal data: ValidTo in place
    second = load(store, model)
    modified = second.modified  # type: ignore[attr-defined]
    assert modified > first.modified  # type: ignore[attr-defined]

    sections = sorted(pids(store, "sygehusafdeling")[4])
    assert sections[0] == (section_pid, modified, midnight("2020-01-01"), midnight("2024-03-02"))
    assert sections[1][1:] == (modified, midnight("2024-03-02"), END_OF_TIME)
    assert sections[1][0] > section_pid  # a new PID
    (dept,) = pids(store, "sygehusafdeling")[3]
    assert dept[:2] == (before[3][0][0], modified)
    assert rows(store, "sygehusafdeling")[3]["navn"] == "Afdeling, nyt navn"
    (si,) = pids(store, "sygehus")[2]
    assert si[1:] == (modified, midnight("2020-01-01"), midnight("2024-12-31"))
    counts = second.counts  # type: ignore[attr-defined]
    assert (
        counts["sor/sygehusafdeling/v1"].inserted,
        counts["sor/sygehusafdeling/v1"].updated,
    ) == (
        1,
        2,
    )

    # Day 2: the section vanishes (its SHAK is removed), the hospital reopens; nothing else moves.
    model.snapshot_date = date(2024, 3, 3)
    u["section"].shak = None
    u["si"].to_date = None
    third = load(store, model)
    modified = third.modified  # type: ignore[attr-defined]
    sections = sorted(pids(store, "sygehusafdeling")[4])
    assert sections[0][1] < modified  # the already closed row is not touched again
    assert sections[1][1:] == (modified, midnight("2024-03-02"), midnight("2024-03-03"))
    (si,) = pids(store, "sygehus")[2]
    assert si[1:] == (modified, midnight("2020-01-01"), END_OF_TIME)  # same PID, reopened
    assert pids(store, "sygehusafdeling")[3][0][1] < modified  # unchanged: not re-delivered
    counts = third.counts  # type: ignore[attr-defined]
    assert counts["sor/sygehusafdeling/v1"].closed == 1
    assert counts["sor/sygehusafdeling/v1"].unchanged == 1
    assert counts["sor/sygehus/v1"].updated == 1


def _tokens(store: Store) -> list[tuple[str, int, int]]:
    return sorted((key, r.pid, r.modified) for key, t in store.tables.items() for r in t)


def test_reproducible_loads_are_stamped_with_the_snapshot_time() -> None:
    """Two fresh stores fed the same snapshots in the same order hold the same PIDs and
    ModifiedDates (a restarted simulator serves the same tokens)."""
    model, u = hospital_model()
    day0 = io.BytesIO()
    write_sortree(model, day0)
    model.snapshot_date = date(2024, 3, 2)
    u["dept"].name = "Afdeling, nyt navn"
    day1 = io.BytesIO()
    write_sortree(model, day1)

    stores = []
    for _ in range(2):
        store = Store()
        for day in (day0, day1):
            day.seek(0)
            load_snapshot(store, day, reproducible=True)
        stores.append(store)
    assert _tokens(stores[0]) == _tokens(stores[1])
    stamps = {modified for _, _, modified in _tokens(stores[0])}
    # the generator writes CreatedAtTime = the snapshot date at local midnight
    assert stamps == {
        int(midnight("2024-03-01").timestamp()),
        int(midnight("2024-03-02").timestamp()),
    }
    # `at` still wins
    store = Store()
    day0.seek(0)
    at = datetime(2024, 5, 1, 12, tzinfo=TZ)
    assert load_snapshot(store, day0, at=at, reproducible=True).modified == int(at.timestamp())


def test_snapshot_time_is_created_at_in_local_time_else_the_snapshot_date() -> None:
    day = date(2024, 3, 1)
    assert snapshot_time(SnapshotHeader(day, None)) == midnight("2024-03-01")
    naive = datetime(2024, 3, 1, 4, 30)
    assert snapshot_time(SnapshotHeader(day, naive)) == naive.replace(tzinfo=TZ)
    aware = datetime.fromisoformat("2024-03-01T04:30:00+00:00")
    assert snapshot_time(SnapshotHeader(day, aware)) == aware


def test_closing_with_changed_data_shifts_the_old_row() -> None:
    store = Store()
    model, u = hospital_model()
    load(store, model)
    (old,) = pids(store, "sygehus")[2]
    model.snapshot_date = date(2024, 3, 2)
    u["si"].to_date = date(2024, 3, 31)
    u["si"].name = "Lukket sygehus"
    load(store, model)
    versions = sorted(pids(store, "sygehus")[2])
    assert versions[0][0] == old[0]
    assert versions[0][2:] == (midnight("2024-03-31"), END_OF_TIME)  # ValidFrom moved (NSP)
    assert versions[1][2:] == (midnight("2020-01-01"), midnight("2024-03-31"))


def test_equal_version_inside_an_open_row_is_inserted_beside_it() -> None:
    # NSP quirk: a later FromDate plus an earlier ValidTo with equal data leaves the old row
    # as it is and inserts the new one too (two overlapping rows).
    new = rec("A", "2024-03-01", "2024-04-01")
    assert decide([row(1, "A", "2024-01-01")], new, FIELDS) == [Insert(new)]
