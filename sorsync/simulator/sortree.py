"""Streaming reader for SOR's XML snapshot (`SorTree`, namespace
`urn:oio:sundhedsstyrelsen:organisation:1.0.0`; docs/reference/sor-model.md §2).

One `SorUnit` per InstitutionOwner (IE), HealthInstitution (SI) and OrganizationalUnit (OE), in
document order, so a unit always comes after its parent. Organisational units nest to any depth.

Each unit carries what it was delivered with (`postal`, `virtual`, `ean`, …) and what it
effectively has after SOR's inheritance rules (docs/reference/sor-model.md §2.6, applied at
every depth):
postal address from the parent when absent; visiting address = own postal when absent; activity
address = own visiting when absent; virtual address from the parent when absent; EAN from the
parent when `EntityInheritedIndicator` is true.

Memory stays flat with file size: every element is cleared once read and finished siblings are
removed, and only the chain of ancestors' effective attributes is kept.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Literal

from lxml import etree

NS = "urn:oio:sundhedsstyrelsen:organisation:1.0.0"
HOSPITAL = 22232009
GENERAL_PRACTICE = 394761003
SPECIALIST_PRACTICE = 550671000005100
PHARMACY = 264372000

Level = Literal["IE", "SI", "OE"]


def _q(local: str) -> str:
    return f"{{{NS}}}{local}"


_ROOT = _q("SorTree")
_CREATED = _q("CreatedAtTime")
_SNAPSHOT = _q("SnapshotDate")
_ENTITIES = {
    _q("InstitutionOwnerEntity"): "IE",
    _q("HealthInstitutionEntity"): "SI",
    _q("OrganizationalUnitEntity"): "OE",
}
_UNITS: dict[str, Level] = {
    _q("InstitutionOwner"): "IE",
    _q("HealthInstitution"): "SI",
    _q("OrganizationalUnit"): "OE",
}
_TAGS = [_ROOT, _CREATED, _SNAPSHOT, *_ENTITIES, *_UNITS]


class SorTreeError(ValueError):
    """The input is not a SorTree this reader can use; the message says what and where."""


@dataclass(frozen=True, slots=True)
class Address:
    street: str | None = None
    building: str | None = None
    floor: str | None = None
    suite: str | None = None
    postcode: str | None = None
    district: str | None = None
    country: str | None = None


@dataclass(frozen=True, slots=True)
class VirtualAddress:
    email: str | None = None
    website: str | None = None
    phone: str | None = None
    fax: str | None = None


@dataclass(slots=True)
class SorUnit:
    level: Level
    sor_id: int
    name: str
    depth: int  # 0 = IE, 1 = SI, 2 = OE directly under the SI, 3 = its child, …
    parent_id: int | None  # None for an IE
    owner_id: int  # the IE above (itself for an IE)
    institution_id: int | None  # the SI above (itself for an SI; None for an IE)
    owner_type: int | None = None  # IE: OwnerType
    institution_type: int | None = None  # the SI's InstitutionType (on the SI and all its OEs)
    unit_type: int | None = None  # OE: UnitType
    shak: str | None = None
    provider_id: str | None = None  # ydernummer, as delivered (leading zeros kept)
    pharmacy_id: str | None = None  # "apoteksnummer,filialnummer"
    local_code: str | None = None
    ean: int | None = None  # own EanLocationCode
    ean_inherited: bool | None = None  # EntityInheritedIndicator (SI/OE)
    ean_from_date: date | None = None  # the own EAN block's SorStatus/FromDate
    ean_to_date: date | None = None  # the own EAN block's SorStatus/ToDate
    region_code: int | None = None  # own EAN block's RegionCode
    owner_region_code: int | None = None  # the IE's EAN block RegionCode
    postal: Address | None = None
    visiting: Address | None = None
    activity: Address | None = None
    virtual: VirtualAddress | None = None
    specialities: tuple[int, ...] = ()  # SpecialityCode in document order (first = main)
    reporting_level: bool | None = None  # OrganizationalUnitInformation/ReportingLevelIndicator
    from_date: date | None = None
    to_date: date | None = None  # last valid day, inclusive
    first_from_date: date | None = None
    updated_at: date | None = None
    replaces: tuple[int, ...] = ()
    replaced_by: tuple[int, ...] = ()
    # effective values after inheritance (docs/reference/sor-model.md §2.6)
    effective_ean: int | None = None
    effective_postal: Address | None = None
    effective_visiting: Address | None = None
    effective_activity: Address | None = None
    effective_virtual: VirtualAddress | None = None


def _local(tag: object) -> str:
    if not isinstance(tag, str):
        return ""
    return tag.rpartition("}")[2]


def _text(elem: etree._Element) -> str | None:
    value = elem.text
    if value is None:
        return None
    value = value.strip()
    return value or None


def _int(elem: etree._Element, unit_hint: str) -> int:
    value = _text(elem)
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise SorTreeError(
            f"{_local(elem.tag)} {value!r} is not a number "
            f"(line {elem.sourceline}{unit_hint}); the SorTree file is damaged"
        ) from None


def _date(elem: etree._Element) -> date | None:
    value = _text(elem)
    if value is None:
        return None
    try:
        # xs:date may carry a zone suffix; the day is what SOR means.
        return date.fromisoformat(value[:10])
    except ValueError:
        raise SorTreeError(
            f"{_local(elem.tag)} {value!r} is not a date YYYY-MM-DD (line {elem.sourceline})"
        ) from None


def _bool(elem: etree._Element) -> bool | None:
    value = _text(elem)
    if value is None:
        return None
    return value in ("true", "1")


_ADDRESS_FIELDS = {
    "StreetName": "street",
    "StreetBuildingIdentifier": "building",
    "FloorIdentifier": "floor",
    "SuiteIdentifier": "suite",
    "PostCodeIdentifier": "postcode",
    "DistrictName": "district",
    "CountryIdentificationCode": "country",
}


def _address(elem: etree._Element) -> Address | None:
    """AddressInformationType: xkom-1:AddressPostal with dkcc/dkcc2005 children. Prefixes are
    arbitrary, so children are matched by local name inside AddressPostal."""
    for postal in elem:
        if _local(postal.tag) != "AddressPostal":
            continue
        found: dict[str, str | None] = {}
        for part in postal:
            name = _ADDRESS_FIELDS.get(_local(part.tag))
            if name is not None:
                found[name] = _text(part)
        return Address(**found)
    return None


_VIRTUAL_FIELDS = {
    "EmailAddressIdentifier": "email",
    "Website": "website",
    "TelephoneNumberIdentifier": "phone",
    "FaxNumberIdentifier": "fax",
}


def _virtual(elem: etree._Element) -> VirtualAddress:
    found: dict[str, str | None] = {}
    for part in elem:
        name = _VIRTUAL_FIELDS.get(_local(part.tag))
        if name is not None:
            found[name] = _text(part)
    return VirtualAddress(**found)


def _ids(elem: etree._Element) -> tuple[int, ...]:
    return tuple(_int(child, "") for child in elem if child.tag == _SOR_IDENTIFIER)


_SOR_IDENTIFIER = _q("SorIdentifier")


def _ean_block(unit: SorUnit, elem: etree._Element) -> None:
    for part in elem:
        local = _local(part.tag)
        if local == "EanLocationCode":
            unit.ean = _int(part, f", unit {unit.sor_id}")
        elif local == "RegionCode":
            unit.region_code = _int(part, f", unit {unit.sor_id}")
        elif local == "SorStatus":
            for status in part:
                if _local(status.tag) == "FromDate":
                    unit.ean_from_date = _date(status)
                elif _local(status.tag) == "ToDate":
                    unit.ean_to_date = _date(status)


def _read_unit(elem: etree._Element, level: Level, parent: SorUnit | None, depth: int) -> SorUnit:
    sor_id: int | None = None
    name: str | None = None
    for child in elem:
        if child.tag == _SOR_IDENTIFIER:
            sor_id = _int(child, "")
        elif child.tag == _q("EntityName"):
            name = _text(child)
        if sor_id is not None and name is not None:
            break
    if sor_id is None:
        raise SorTreeError(
            f"a {_local(elem.tag)} without SorIdentifier at line {elem.sourceline}; "
            "every SOR unit needs one - the SorTree file is damaged"
        )
    if level == "IE":
        unit = SorUnit(level, sor_id, name or "", depth, None, sor_id, None)
    else:
        assert parent is not None
        institution_id = sor_id if level == "SI" else parent.institution_id
        unit = SorUnit(
            level, sor_id, name or "", depth, parent.sor_id, parent.owner_id, institution_id
        )
        unit.institution_type = parent.institution_type
        unit.owner_region_code = parent.owner_region_code
    hint = f", unit {sor_id}"
    for child in elem:
        tag = child.tag
        if not isinstance(tag, str) or not tag.startswith("{" + NS):
            continue
        local = tag[len(NS) + 2 :]
        if local in ("SorIdentifier", "EntityName"):
            continue
        if local == "OwnerType":
            unit.owner_type = _int(child, hint)
        elif local == "InstitutionType":
            unit.institution_type = _int(child, hint)
        elif local == "UnitType":
            unit.unit_type = _int(child, hint)
        elif local == "ShakIdentifier":
            unit.shak = _text(child)
        elif local == "ProviderIdentifier":
            unit.provider_id = _text(child)
        elif local == "PharmacyIdentifier":
            unit.pharmacy_id = _text(child)
        elif local == "LocalCode":
            unit.local_code = _text(child)
        elif local == "EanLocationCodeEntity":  # an IE's own EAN block
            _ean_block(unit, child)
        elif local == "OptionalEanLocationCode":
            for choice in child:
                if _local(choice.tag) == "EntityInheritedIndicator":
                    unit.ean_inherited = _bool(choice)
                elif _local(choice.tag) == "EanLocationCodeEntity":
                    _ean_block(unit, choice)
        elif local == "PostalAddressInformation":
            unit.postal = _address(child)
        elif local == "VisitingAddressInformation":
            unit.visiting = _address(child)
        elif local == "ActivityAddressInformation":
            unit.activity = _address(child)
        elif local == "VirtualAddressInformation":
            unit.virtual = _virtual(child)
        elif local == "ClinicalSpecialityCollection":
            unit.specialities = tuple(
                _int(code, hint)
                for speciality in child
                for code in speciality
                if _local(code.tag) == "SpecialityCode"
            )
        elif local == "SorStatus":
            for status in child:
                part = _local(status.tag)
                if part == "FromDate":
                    unit.from_date = _date(status)
                elif part == "ToDate":
                    unit.to_date = _date(status)
                elif part == "FirstFromDate":
                    unit.first_from_date = _date(status)
                elif part == "UpdatedAt":
                    unit.updated_at = _date(status)
        elif local == "ReplacesEntityCollection":
            unit.replaces = _ids(child)
        elif local == "ReplacedByEntityCollection":
            unit.replaced_by = _ids(child)
        elif local == "OrganizationalUnitInformation":
            for info in child:
                if _local(info.tag) == "ReportingLevelIndicator":
                    unit.reporting_level = _bool(info)
    if level == "IE":
        unit.owner_region_code = unit.region_code
    _inherit(unit, parent)
    return unit


def _inherit(unit: SorUnit, parent: SorUnit | None) -> None:
    """docs/reference/sor-model.md §2.6, at every depth (not SDM4's two-level push-down)."""
    if parent is None:
        unit.effective_ean = unit.ean
        unit.effective_postal = unit.postal
        unit.effective_virtual = unit.virtual
    else:
        if unit.ean is not None:
            unit.effective_ean = unit.ean
        elif unit.ean_inherited:
            unit.effective_ean = parent.effective_ean
        unit.effective_postal = unit.postal or parent.effective_postal
        unit.effective_virtual = unit.virtual or parent.effective_virtual
    unit.effective_visiting = unit.visiting or unit.effective_postal
    unit.effective_activity = unit.activity or unit.effective_visiting


@dataclass(frozen=True, slots=True)
class SnapshotHeader:
    snapshot_date: date
    created_at: datetime | None


class _Prefixed:
    """A read() source that first returns bytes already taken from `rest` (to sniff gzip)."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head = head
        self._rest = rest

    def read(self, size: int = -1) -> bytes:
        if self._head:
            if size < 0:
                data, self._head = self._head + self._rest.read(), b""
                return data
            data, self._head = self._head[:size], self._head[size:]
            return data
        return self._rest.read(size)


def open_source(source: Path | str | BinaryIO, stack: ExitStack) -> BinaryIO:
    """A binary stream of XML from a path or an open binary file, gunzipped when it is gzip."""
    if isinstance(source, str | Path):
        path = Path(source)
        try:
            raw: BinaryIO = stack.enter_context(path.open("rb"))
        except OSError as exc:
            raise SorTreeError(
                f"cannot read SOR snapshot {path}: {exc.strerror}; check the path"
            ) from None
    else:
        raw = source
    head = raw.read(2)
    wrapped: BinaryIO = _Prefixed(head, raw)  # type: ignore[assignment]
    if head == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=wrapped, mode="rb")  # type: ignore[return-value]
    return wrapped


class SorTreeReader(AbstractContextManager["SorTreeReader"]):
    """Open a SorTree and read its header; iterate `units()` for the units.

    ```
    with SorTreeReader(path) as tree:
        tree.header.snapshot_date
        for unit in tree.units(): ...
    ```
    """

    def __init__(self, source: Path | str | BinaryIO) -> None:
        self._stack = ExitStack()
        try:
            stream = open_source(source, self._stack)
            self._events: Iterator[tuple[str, etree._Element]] = etree.iterparse(
                stream,
                events=("start", "end"),
                tag=_TAGS,
                resolve_entities=False,
                no_network=True,
                load_dtd=False,
                huge_tree=True,
                remove_comments=True,
                remove_pis=True,
            )
            self._pending: tuple[str, etree._Element] | None = None
            self.header = self._read_header()
        except BaseException:
            self._stack.close()
            raise
        self._used = False

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stack.close()

    def close(self) -> None:
        self._stack.close()

    def _next(self) -> tuple[str, etree._Element] | None:
        try:
            return next(self._events)
        except StopIteration:
            return None
        except etree.XMLSyntaxError as exc:
            raise SorTreeError(f"the SOR snapshot is not well-formed XML: {exc}") from None
        except (OSError, EOFError) as exc:
            raise SorTreeError(f"cannot read the SOR snapshot: {exc}") from None

    def _read_header(self) -> SnapshotHeader:
        snapshot: date | None = None
        created: datetime | None = None
        seen_root = False
        while (item := self._next()) is not None:
            event, elem = item
            if not seen_root:
                seen_root = True
                if elem.getroottree().docinfo.doctype:  # type: ignore[attr-defined]
                    raise SorTreeError(
                        "the SOR snapshot has a DOCTYPE declaration; SorTree files never do, "
                        "so it is refused (possible entity expansion attack)"
                    )
            if event == "start" and elem.tag in _ENTITIES:
                self._pending = item
                break
            if event == "end" and elem.tag == _SNAPSHOT:
                snapshot = _date(elem)
            elif event == "end" and elem.tag == _CREATED:
                value = _text(elem)
                if value:
                    try:
                        created = datetime.fromisoformat(value)
                    except ValueError:
                        raise SorTreeError(
                            f"CreatedAtTime {value!r} is not an ISO date-time"
                        ) from None
        if snapshot is None:
            raise SorTreeError(
                "no SnapshotDate found: this is not a SorTree in namespace "
                f"{NS} (SOR XML schema 1.0.0); check that the file is SOR's XML extract"
            )
        return SnapshotHeader(snapshot, created)

    def units(self) -> Iterator[SorUnit]:
        if self._used:
            raise RuntimeError("a SorTreeReader can be iterated once")
        self._used = True
        # One slot per open *Entity; filled when its unit element has been read.
        stack: list[SorUnit | None] = []
        item = self._pending
        self._pending = None
        if item is None:
            item = self._next()
        while item is not None:
            event, elem = item
            tag = elem.tag
            if event == "start":
                if tag in _ENTITIES:
                    stack.append(None)
            elif tag in _UNITS:
                level = _UNITS[tag]
                depth = len(stack) - 1
                expected = "IE" if depth == 0 else ("SI" if depth == 1 else "OE")
                if level != expected or stack[-1] is not None:
                    raise SorTreeError(
                        f"{_local(tag)} at line {elem.sourceline} is not where SorTree puts it "
                        "(InstitutionOwner > HealthInstitution > OrganizationalUnit…)"
                    )
                parent = stack[-2] if depth > 0 else None
                if depth > 0 and parent is None:
                    raise SorTreeError(
                        f"{_local(tag)} at line {elem.sourceline} has no readable parent unit"
                    )
                unit = _read_unit(elem, level, parent, depth)
                stack[-1] = unit
                elem.clear()
                yield unit
            elif tag in _ENTITIES:
                stack.pop()
                # Drop what is finished: this entity's content and earlier siblings.
                elem.clear()
                parent_elem = elem.getparent()
                if parent_elem is not None:
                    while elem.getprevious() is not None:
                        del parent_elem[0]
            item = self._next()


def read_units(source: Path | str | BinaryIO) -> tuple[SnapshotHeader, list[SorUnit]]:
    """Read a whole (small) SorTree into memory: for tests and tools, not for big files."""
    with SorTreeReader(source) as tree:
        return tree.header, list(tree.units())


def read_bytes(data: bytes) -> tuple[SnapshotHeader, list[SorUnit]]:
    return read_units(io.BytesIO(data))
