"""SOR2 fields on the unit page: what `facts` lists for a unit carrying them (the values are
shaped as sor.unit gives them, sorsync/db/views.py), and the replaced-by links."""

from __future__ import annotations

import datetime as dt
from typing import Any

from api.ui.i18n import translator
from api.ui.pages import _replaced_by, facts
from sorsync.identifiers import make_sor_id
from sorsync.lookup import Unit


def sor2_unit(**values: Any) -> Unit:
    base: dict[str, Any] = dict.fromkeys(Unit._fields)
    base |= {
        "sor_id": int(make_sor_id(70001)),
        "kind": "organisationsenhed",
        "name": "Klinik for Hjertesygdomme",
        "pid": 1,
        "modified_at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        "datatype": "sor/v2/sorentity/v1",
        "sor_type": "OE",
        "entity_type": "Klinisk enhed",
        "organisational_level_code": "3",
        "organisational_level_name": "Afsnit",
        "hospital_sor_id": int(make_sor_id(70000)),
        "health_institution_name": "Testhospital Syd",
        "institution_owner_sor_id": int(make_sor_id(69999)),
        "institution_owner_name": "Region Test",
        "institution_owner_type": "region",
        "institution_owner_cvr": "29190925",
        "specialities": [
            {"code": "394579002", "name": "kardiologi"},
            {"code": "419192003", "name": "intern medicin"},
        ],
        "addresses": {
            "postal": {"street_name": "Testvej", "street_building_id": "12", "postcode": "8000"},
            "visiting": {
                "street_name": "Testvej",
                "street_building_id": "14",
                "floor_id": "2",
                "postcode": "8000",
                "district_name": "Aarhus C",
                "etrs89_e": 575000.0,
                "etrs89_n": 6223000.0,
            },
        },
        "replaced_by": [int(make_sor_id(70002))],
    }
    return Unit(**(base | values))


def test_sor2_fields_are_listed() -> None:
    t = translator("da")
    listed = {f.label: f for f in facts(t, sor2_unit(), {})}
    assert listed["SOR-type"].value == "OE"
    assert listed["Enhedstype"].value == "Klinisk enhed"
    assert listed["Organisatorisk niveau"].value == "Afsnit (3)"
    assert listed["Sundhedsinstitution"].value == "Testhospital Syd"
    owner = listed["Institutionsejer"]
    assert owner.value == "Region Test"
    assert owner.lines == ("ejertype region", "CVR 29190925")
    assert listed["Specialer"].value == "kardiologi (394579002)"
    assert listed["Specialer"].lines == ("intern medicin (419192003)",)
    assert listed["Postadresse"].value == "Testvej 12"
    visiting = listed["Besøgsadresse"]
    assert visiting.value == "Testvej 14, 2"
    assert visiting.lines[0] == "8000 Aarhus C"
    assert visiting.lines[1].startswith("56.1")  # WGS84 latitude, projected by pyproj
    assert "ETRS89 E 575000 N 6223000" in visiting.lines[1]


def test_one_address_in_several_roles_is_listed_once() -> None:
    same = {"street_name": "Testvej", "street_building_id": "12", "postcode": "8000"}
    unit = sor2_unit(addresses={"postal": same, "visiting": same, "activity": same})
    listed = {f.label: f for f in facts(translator("da"), unit, {})}
    assert listed["Adresse"].value == "Testvej 12"
    assert listed["Adresse"].lines == ("8000", "(postadresse, besøgsadresse, aktivitetsadresse)")


def test_english_labels_and_replaced_by() -> None:
    unit = sor2_unit()
    labels = [f.label for f in facts(translator("en"), unit, {})]
    assert "Visiting address" in labels
    assert "Institution owner" in labels
    assert _replaced_by(unit, [unit]) == [int(make_sor_id(70002))]
    assert _replaced_by(sor2_unit(replaced_by=None), []) == []


def test_a_v1_unit_shows_no_sor2_rows() -> None:
    v1 = sor2_unit(
        datatype="sor/sygehus/v1",
        sor_type=None,
        entity_type=None,
        organisational_level_code=None,
        organisational_level_name=None,
        health_institution_name=None,
        institution_owner_sor_id=None,
        institution_owner_name=None,
        specialities=None,
        addresses=None,
        street="Hospitalsvej 1",
        postcode="9000",
        city="Aalborg",
    )
    listed = {f.label: f for f in facts(translator("da"), v1, {})}
    assert "SOR-type" not in listed
    assert listed["Adresse"].value == "Hospitalsvej 1"
    assert listed["Adresse"].lines == ("9000 Aalborg",)
