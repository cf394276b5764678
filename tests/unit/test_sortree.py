"""The streaming SorTree reader: real samples, namespaces, nesting, inheritance, bad input."""

from __future__ import annotations

import gzip
import io
from datetime import date
from pathlib import Path

import pytest

from sorsync.simulator.sortree import (
    Address,
    SorTreeError,
    SorTreeReader,
    VirtualAddress,
    read_bytes,
    read_units,
)

SAMPLES = Path(__file__).parent.parent / "data" / "sor-xml-samples"
NS = "urn:oio:sundhedsstyrelsen:organisation:1.0.0"


def test_hospital_sample_units_and_inheritance() -> None:
    header, units = read_units(SAMPLES / "ONE_SYGEHUS.xml")
    assert header.snapshot_date == date(2010, 1, 26)
    assert header.created_at is not None
    assert header.created_at.isoformat() == ("2010-01-26T00:00:00+01:00")
    owner, si, dept, section = units
    assert [u.level for u in units] == ["IE", "SI", "OE", "OE"]
    assert [u.depth for u in units] == [0, 1, 2, 3]
    assert owner.owner_type == 550891000005100
    assert owner.postal == Address("Hestetorvet", "8", None, None, "4000", "Roskilde", "DK")
    assert owner.virtual == VirtualAddress(
        "J.Thulesen@dadlnet.dk", "www.roskildeojenklinik.dk", "46361266", None
    )
    assert (si.sor_id, si.shak, si.institution_type) == (347811000016004, "2529", 22232009)
    assert si.postal is None
    assert si.effective_postal == owner.postal
    assert si.effective_virtual == owner.virtual
    assert si.ean_inherited is False
    assert si.effective_ean is None
    assert (dept.sor_id, dept.shak, dept.unit_type) == (347821000016008, "252901", 550811000005108)
    assert dept.parent_id == si.sor_id
    assert dept.institution_id == si.sor_id
    assert dept.owner_id == owner.sor_id
    assert dept.institution_type == 22232009
    assert dept.reporting_level is False
    assert section.parent_id == dept.sor_id
    assert section.institution_id == si.sor_id
    assert section.shak == "2529010"
    assert section.specialities == (394594003,)
    assert section.reporting_level is True
    assert section.effective_postal == owner.postal
    assert section.effective_visiting == owner.postal  # visiting → own (inherited) postal
    assert section.from_date == date(2009, 10, 8)
    assert section.first_from_date == date(2009, 10, 8)
    assert section.updated_at == date(2009, 10, 1)
    assert section.to_date is None


def test_practice_sample_ean_is_inherited_from_the_owner() -> None:
    _, (owner, si, yder) = read_units(SAMPLES / "ONE_PRAKSIS.xml")
    assert owner.ean == 5790000141227
    assert owner.region_code == 1084
    assert si.ean is None
    assert si.ean_inherited is True
    assert si.effective_ean == yder.effective_ean == 5790000141227
    assert si.owner_region_code == yder.owner_region_code == 1084
    assert yder.provider_id == "019062"  # as delivered
    assert si.name == "Michael Filtenborg & co"
    assert yder.effective_virtual == VirtualAddress(None, None, "48300204", "48300109")


def test_pharmacy_sample() -> None:
    _, (_owner, si, unit) = read_units(SAMPLES / "ONE_APOTEK.xml")
    assert si.institution_type == unit.institution_type == 264372000
    assert unit.pharmacy_id == "362,1"
    assert unit.effective_ean == 5790000173624
    assert unit.effective_postal is not None
    assert unit.effective_postal.district == "Værløse"


def test_gzip_path_and_streams_are_read(tmp_path: Path) -> None:
    raw = (SAMPLES / "ONE_APOTEK.xml").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # the BOM is part of what we must read
    packed = tmp_path / "tree.xml.gz"
    packed.write_bytes(gzip.compress(raw))
    for source in (packed, io.BytesIO(gzip.compress(raw)), io.BytesIO(raw), str(packed)):
        _, units = read_units(source)
        assert [u.sor_id for u in units] == [306011000016003, 306021000016007, 306031000016009]


def _tree(body: str, *, prefixes: str = "", snapshot: str = "2024-05-01") -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><SorTree xmlns="{NS}" {prefixes}>'
        f"<CreatedAtTime>2024-05-01T00:00:00+02:00</CreatedAtTime>"
        f"<SnapshotDate>{snapshot}</SnapshotDate>{body}</SorTree>"
    ).encode()


def _status(start: str = "2020-01-01", end: str | None = None) -> str:
    to = f"<ToDate>{end}</ToDate>" if end else ""
    return (
        f"<SorStatus><FromDate>{start}</FromDate>{to}"
        f"<FirstFromDate>{start}</FirstFromDate></SorStatus>"
    )


def _postal(street: str, prefix: str = "a", b: str = "b") -> str:
    return (
        f"<PostalAddressInformation><{prefix}:AddressPostal><{b}:StreetName>{street}</{b}:StreetName>"
        f"<{b}:StreetBuildingIdentifier>1</{b}:StreetBuildingIdentifier>"
        f"<{b}:PostCodeIdentifier>9999</{b}:PostCodeIdentifier>"
        f"<{b}:DistrictName>Hyldebæk</{b}:DistrictName></{prefix}:AddressPostal>"
        "</PostalAddressInformation>"
    )


PREFIXES = (
    'xmlns:a="http://rep.oio.dk/xkom.dk/xml/schemas/2006/01/06/" '
    'xmlns:b="http://rep.oio.dk/ebxml/xml/schemas/dkcc/2005/03/15/"'
)


def _owner(inner: str, *, ean: str = "") -> str:
    return (
        "<InstitutionOwnerEntity><InstitutionOwner><SorIdentifier>11000016002</SorIdentifier>"
        f"<EntityName>Ejer</EntityName><OwnerType>550881000005103</OwnerType>{ean}"
        f"{_postal('Ejervej')}<VirtualAddressInformation><TelephoneNumberIdentifier>11111111"
        f"</TelephoneNumberIdentifier></VirtualAddressInformation>{_status()}</InstitutionOwner>"
        f"{inner}</InstitutionOwnerEntity>"
    )


def _oe(sor: int, inner: str = "", *, extra: str = "", ean: str = "false") -> str:
    ean_xml = (
        f"<EntityInheritedIndicator>{ean}</EntityInheritedIndicator>"
        if ean in ("true", "false")
        else "<EanLocationCodeEntity>"
        f"<EanLocationCode>{ean}</EanLocationCode></EanLocationCodeEntity>"
    )
    return (
        f"<OrganizationalUnitEntity><OrganizationalUnit><SorIdentifier>{sor}</SorIdentifier>"
        f"<EntityName>Enhed {sor}</EntityName><OptionalEanLocationCode>{ean_xml}"
        f"</OptionalEanLocationCode>{extra}{_status()}</OrganizationalUnit>{inner}"
        "</OrganizationalUnitEntity>"
    )


def _si(inner: str, *, kind: int = 22232009, extra: str = "") -> str:
    return (
        "<HealthInstitutionEntity><HealthInstitution><SorIdentifier>21000016000</SorIdentifier>"
        f"<EntityName>Institution</EntityName><InstitutionType>{kind}</InstitutionType>{extra}"
        "<OptionalEanLocationCode><EntityInheritedIndicator>true</EntityInheritedIndicator>"
        f"</OptionalEanLocationCode>{_status()}</HealthInstitution>{inner}</HealthInstitutionEntity>"
    )


def test_deep_nesting_inherits_at_every_level() -> None:
    # 8 nested units; level 3 has its own postal address and EAN, the ones below inherit both.
    inner = ""
    for level in range(8, 0, -1):
        sor = 1000 + level
        extra = _postal("Dybvej") if level == 3 else ""
        ean = "5790000000001" if level == 3 else ("true" if level > 3 else "false")
        inner = _oe(sor, inner, extra=extra, ean=ean)
    xml = _tree(_owner(_si(inner)), prefixes=PREFIXES)
    _, units = read_bytes(xml)
    oes = units[2:]
    assert [u.depth for u in oes] == list(range(2, 10))
    assert [u.parent_id for u in oes[1:]] == [u.sor_id for u in oes[:-1]]
    assert all(u.institution_id == 21000016000 for u in oes)
    assert [u.effective_postal.street for u in oes] == (  # type: ignore[union-attr]
        ["Ejervej"] * 2 + ["Dybvej"] * 6
    )
    assert [u.effective_ean for u in oes] == [None, None] + [5790000000001] * 6


def test_address_children_are_matched_by_local_name_whatever_the_prefix() -> None:
    odd = (
        'xmlns:x9="http://rep.oio.dk/xkom.dk/xml/schemas/2006/01/06/" '
        'xmlns:q="http://rep.oio.dk/ebxml/xml/schemas/dkcc/2003/02/13/"'
    )
    body = _owner("").replace(_postal("Ejervej"), _postal("Ejervej", "x9", "q"))
    _, (owner,) = read_bytes(_tree(body, prefixes=odd))
    assert owner.postal == Address("Ejervej", "1", None, None, "9999", "Hyldebæk", None)


def test_doctype_is_refused() -> None:
    xml = _tree(_owner(""), prefixes=PREFIXES).replace(
        b"<SorTree", b'<!DOCTYPE SorTree [<!ENTITY x "boom">]><SorTree', 1
    )
    with pytest.raises(SorTreeError, match="DOCTYPE"):
        read_bytes(xml)


def test_other_xml_is_refused_with_a_readable_message() -> None:
    with pytest.raises(SorTreeError, match="not a SorTree"):
        read_bytes(b"<feed xmlns='http://www.w3.org/2005/Atom'><entry/></feed>")
    with pytest.raises(SorTreeError, match="not well-formed"):
        read_bytes(_tree(_owner(""), prefixes=PREFIXES)[:-20])
    with pytest.raises(SorTreeError, match="cannot read"):
        read_units(Path("/nonexistent/sor.xml"))


def test_bad_number_names_the_line() -> None:
    xml = _tree(_owner(""), prefixes=PREFIXES).replace(b"550881000005103", b"region", 1)
    with pytest.raises(SorTreeError, match=r"OwnerType 'region' is not a number \(line 1"):
        read_bytes(xml)


def test_memory_is_released_as_units_are_read() -> None:
    # Finished entities are removed from the tree: after reading, the root holds nothing.
    body = "".join(_owner(_si(_oe(5000 + i))) for i in range(50))
    with SorTreeReader(io.BytesIO(_tree(body, prefixes=PREFIXES))) as tree:
        root = None
        for unit in tree.units():
            assert unit.sor_id
        root = tree._events.root  # type: ignore[attr-defined]
        assert root is not None
        assert len(root) <= 1
