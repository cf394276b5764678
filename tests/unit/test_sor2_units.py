"""Pure parts of SOR2: datatype keys, the request's registerVersion, whole records as JSON,
field profiles and drift, and the mapping's override file."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from sorsync.datatypes import KeyFormatError, lookup, parse_key
from sorsync.krs.client import KrsClient
from sorsync.krs.errors import MalformedResponse
from sorsync.krs.profile import Profile, compare, looks_like
from sorsync.krs.records import MAX_DEPTH, record_value
from sorsync.mapping import Expected, Kind, MappingError, default_mapping, load_mapping


@pytest.mark.parametrize(
    ("key", "parts", "table"),
    [
        ("sor/sygehus/v1", ("sor", 1, "sygehus", 1), "sor_sygehus_v1"),
        ("sor/v2/sorentity/v1", ("sor", 2, "sorentity", 1), "sor_v2_sorentity_v1"),
        ("x/v3/y/v4", ("x", 3, "y", 4), "x_v3_y_v4"),
    ],
)
def test_keys(key: str, parts: tuple[str, int, str, int], table: str) -> None:
    assert parse_key(key) == parts
    dt = lookup(key)
    assert (dt.key, dt.table) == (key, table)


def test_an_alias_of_a_v1_key_is_the_v1_datatype_and_bad_keys_say_the_form() -> None:
    assert lookup("sor/v1/sygehus/v1").key == "sor/sygehus/v1"
    assert not lookup("sor/v1/sygehus/v1").is_document
    assert lookup("sor/v2/sorentity/v1").is_document
    for bad in ("sor", "Sor/x/v1", "sor/x/1", "sor/v2/x", "sor/v0/x/v1", "a/b/c/d/e"):
        with pytest.raises(KeyFormatError, match="register/vR/datatype/vN"):
            parse_key(bad)


def test_register_version_goes_after_version_and_only_above_1() -> None:
    client = KrsClient("http://127.0.0.1:9/unused")
    v2 = client.request_body(lookup("sor/v2/sorentity/v1"), "0" * 20, 10)
    names = [etree.QName(c).localname for c in etree.fromstring(v2)]
    assert names == ["register", "datatype", "version", "registerVersion", "offset", "maxRecords"]
    assert b"<registerVersion>2</registerVersion>" in v2
    assert b"registerVersion" not in client.request_body(lookup("sor/sygehus/v1"), "0" * 20, 10)


def _record(xml: str) -> dict[str, object]:
    return record_value(etree.fromstring(xml), "test")


def test_a_record_is_kept_whole_whatever_its_shape() -> None:
    xml = (
        '<r:sorentity xmlns:r="urn:r" xmlns:o="urn:other"'
        ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        "<r:SorId>1</r:SorId><r:Empty/><r:Nil xsi:nil='true'/>"
        "<r:Speciality>a</r:Speciality><r:Speciality>b</r:Speciality>"
        "<r:Address><r:Street>Vej</r:Street><r:Geo kind='utm'>5</r:Geo></r:Address>"
        "<o:Foreign>x</o:Foreign></r:sorentity>"
    )
    assert _record(xml) == {
        "SorId": "1",
        "Empty": "",
        "Nil": None,
        "Speciality": ["a", "b"],
        "Address": {"Street": "Vej", "Geo": {"@kind": "utm", "#text": "5"}},
        "{urn:other}Foreign": "x",
    }


def test_a_flat_record_reads_the_same_in_one_pass() -> None:
    assert _record("<r xmlns='urn:x'><A>1</A><B/><C>é</C></r>") == {"A": "1", "B": "", "C": "é"}


def test_nesting_beyond_the_limit_is_refused() -> None:
    deep = "<a>" * (MAX_DEPTH + 3) + "x" + "</a>" * (MAX_DEPTH + 3)
    with pytest.raises(MalformedResponse, match="nested more than"):
        _record(f"<r>{deep}</r>")


def test_profile_types_and_drift_ignore_optional_fields() -> None:
    assert [
        looks_like(v) for v in ("12", "1,5", "2024-01-01", "2024-01-01T00:00:00Z", "x", "")
    ] == ["integer", "decimal", "date", "date-time", "text", "empty"]
    profile = Profile()
    profile.add("urn:x", "r", {"A": "1", "New": "x"})
    profile.add("urn:x", "r", {"A": "2"})
    assert profile.fields["A"].count == 2
    assert profile.namespace == "urn:x"
    drift = compare(profile, Expected.of({"A", "B", "Rare"}, {"A", "B"}))
    assert drift.missing == ("B",)  # Rare is optional: absent from a whole feed is fine
    assert drift.unmapped == ("New",)
    assert drift.summary() == "mapped but not seen: B; not mapped: New"


def test_mapping_overrides_rename_retype_and_add(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text(
        '[datatypes]\nsorentity = "sor/v3/sorentity/v2"\n'
        '[fields.sorentity]\nentity_name = "Name"\nextra_date = { element = "X", type = "date" }\n',
        encoding="utf-8",
    )
    mapping = load_mapping(path)
    ent = mapping.role("sorentity")
    assert ent.key == "sor/v3/sorentity/v2"
    assert ent.field("entity_name").element == "Name"
    assert ent.field("extra_date").kind is Kind.DATE
    assert mapping.fingerprint() != default_mapping().fingerprint()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[nope]\n", "unknown section"),
        ('[datatypes]\nfoo = "sor/v2/x/v1"\n', "unknown role 'foo'"),
        ('[datatypes]\nsorentity = "bad"\n', "not a KRS datatype key"),
        ('[fields.sorentity]\n"Bad Column" = "X"\n', "not a usable column name"),
        ('[fields.sorentity]\nrecord = "X"\n', "not a usable column name"),
        ('[fields.sorentity]\nx = "a b"\n', "not an XML element name"),
        ('[fields.sorentity]\nx = { element = "X", type = "blob" }\n', "type 'blob'"),
        ("[fields\n", "cannot be read as TOML"),
    ],
)
def test_a_bad_override_names_the_file_and_entry(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "m.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(MappingError, match=message) as caught:
        load_mapping(path)
    assert str(path) in str(caught.value)


def test_a_flat_record_with_a_control_character_is_refused() -> None:
    # U+0085 is well-formed XML but no SOR text; the one-pass read must not let it through.
    with pytest.raises(MalformedResponse, match="control character"):
        _record("<r xmlns='urn:x'><A>1</A><B>x\u0085y</B></r>")
