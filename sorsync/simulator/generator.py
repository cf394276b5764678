"""Fictive but realistically shaped SOR snapshots (SorTree XML), reproducible from a seed.

`generate(n, seed=s)` builds a tree of about n units: five regions owning hospitals (4-character
SHAK) with departments (6) and sections (7, the last character sometimes a letter) nested 2-4
levels, some grouping units without SHAK (whose SHAK-bearing children NSP then drops); general and
specialist practices with ydernumre (6 digits, leading zero, a few shared by two practices);
pharmacies with "apoteksnummer,filialnummer"; a few other institution types NSP ignores. SOR ids
are valid (Verhoeff, sequential), EAN/GLN codes valid (579 prefix) and often inherited. Names,
streets and towns are invented.

`evolve(model, k, seed=s)` makes the next day's snapshot with k changes of every kind, and
`write_sortree(model, out)` streams the XML. Same arguments → same bytes.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import BinaryIO
from zoneinfo import ZoneInfo

from sorsync.identifiers import make_gln, make_sor_id
from sorsync.simulator.importer import SPECIALITY_TEXTS
from sorsync.simulator.sortree import (
    GENERAL_PRACTICE,
    HOSPITAL,
    PHARMACY,
    SPECIALIST_PRACTICE,
    Address,
    VirtualAddress,
)

FIRST_SNAPSHOT = date(2025, 1, 6)
TZ = ZoneInfo("Europe/Copenhagen")

OWNER_REGION = 550881000005103
OWNER_MUNICIPALITY = 547211000005108
OWNER_PRIVATE = 550891000005100

# Hospital unit types (NSP knows their texts) and how often they occur among sections.
CLINICAL = 550851000005109
ADMINISTRATIVE = 550811000005108
SECTION_TYPES = (
    CLINICAL, CLINICAL, CLINICAL, CLINICAL, CLINICAL, 551611000005102, 309904001,
    309964003, 550871000005101, 550821000005102, 550831000005104, 550841000005107,
)  # fmt: skip
MAIN_SPECIALITY_TYPE = "51000095001"
HOSPITAL_SPECIALITIES = tuple(code for code in SPECIALITY_TEXTS if code != 408443003)
SPECIALIST_SPECIALITIES = (
    394582007, 394594003, 394604002, 394587001, 394537008, 394585009, 394810000, 394801008,
)  # fmt: skip
GP_SPECIALITY = 408443003
OTHER_INSTITUTION_TYPES = (547011000005103, 550641000005106, 550681000005102, 264361005,
                           550631000005103)  # fmt: skip
OTHER_NAMES = {
    547011000005103: "Fysioterapi",
    550641000005106: "Kiropraktorklinik",
    550681000005102: "Tandlægerne",
    264361005: "Sundhedscenter",
    550631000005103: "Jordemoderklinik",
}

REGIONS = (  # RegionCode, name, postcode range
    (1081, "Region Nordjylland", 9000, 9990),
    (1082, "Region Midtjylland", 7000, 8990),
    (1083, "Region Syddanmark", 5000, 6990),
    (1084, "Region Hovedstaden", 1050, 3690),
    (1085, "Region Sjælland", 4000, 4990),
)

_TOWN_HEADS = (
    "Hyld", "Ask", "Birke", "Ege", "Lyng", "Mose", "Sten", "Hede", "Fjord", "Bakke", "Skov",
    "Strand", "Ravne", "Ulve", "Hjorte", "Trane", "Rug", "Havre", "Hasle", "Kilde", "Sol",
    "Vester", "Øster", "Nørre", "Sønder", "Lind", "Rø", "Tørve", "Kær", "Ny",
)  # fmt: skip
_TOWN_TAILS = ("bæk", "holm", "lund", "rup", "sted", "løse", "bjerg", "købing", "strup",
               "ager", "by", "vig", "høj", "skov", "hede")  # fmt: skip
_STREET_HEADS = (
    "Hyldebær", "Kastanje", "Syren", "Bøge", "Ahorn", "Kirsebær", "Lærke", "Solsikke", "Rønne",
    "Hassel", "Pile", "Elme", "Valmue", "Kornblomst", "Brombær", "Tjørne", "Engblomme", "Mølle",
    "Skole", "Kirke", "Havne", "Stations", "Skovbryn", "Æble", "Blåbær", "Lupin", "Kløver",
    "Ravn", "Svane", "Stork",
)  # fmt: skip
_STREET_TAILS = ("vej", "gade", "allé", "stræde", "toften", "parken", "vænget", "haven",
                 "stien", "bakken")  # fmt: skip
_FIRST = (
    "Anne", "Mette", "Lars", "Jens", "Søren", "Hanne", "Kirsten", "Peter", "Mads", "Ida",
    "Freja", "Mikkel", "Rasmus", "Camilla", "Louise", "Niels", "Birgitte", "Karen", "Henrik",
    "Thomas", "Sofie", "Emil", "Julie", "Anders", "Signe", "Jakob", "Line", "Ole", "Trine", "Bo",
)  # fmt: skip
_LAST = (
    "Hyldgaard", "Bækdal", "Lyngholm", "Stenbæk", "Mosegaard", "Ravnkilde", "Hedelund",
    "Skovmand", "Birkholm", "Engstrøm", "Fjordside", "Bakkegaard", "Ulvsted", "Tranekær",
    "Askholm", "Egelund", "Kildegaard", "Rugaard", "Havsted", "Lindvig", "Kærsgaard", "Nyholm",
    "Solbjerg", "Hasselby", "Tørnqvist",
)  # fmt: skip
_SECTION_WORDS = ("sengeafsnit", "ambulatorium", "dagafsnit", "klinik", "afsnit")
_TEAM_WORDS = ("team", "funktion", "enhed")
_RENAME_SUFFIXES = ("Nord", "Syd", "Øst", "Vest", "Centrum", "Hus A", "Hus B", "Klinik 2")
_SHAK_SECTION_CHARS = "0123456789" * 3 + "ABCDEFGHJKLMNPRSTUVXYZ"


def _ascii(text: str) -> str:
    out = text.lower().replace("æ", "ae").replace("ø", "oe").replace("å", "aa")
    return "".join(ch if ch.isalnum() else "-" for ch in out).strip("-")


def _build_towns() -> list[list[tuple[str, str, int]]]:
    """Per region: (town, postcode, region code), invented names, plausible postcodes."""
    towns: list[list[tuple[str, str, int]]] = []
    rng = random.Random(1084)  # fixed: the town list is part of the format, not of the seed
    names = [h + t for h in _TOWN_HEADS for t in _TOWN_TAILS]
    rng.shuffle(names)
    for r, (code, _name, low, high) in enumerate(REGIONS):
        picked = names[r * 24 : (r + 1) * 24]
        step = (high - low) // len(picked)
        towns.append([(n, str(low + i * step + 10), code) for i, n in enumerate(picked)])
    return towns


TOWNS = _build_towns()
STREETS = [h + t for h in _STREET_HEADS for t in _STREET_TAILS]
TOWN_SLUGS = {t[0]: _ascii(t[0]) for region in TOWNS for t in region}


@dataclass(slots=True, eq=False)
class GenUnit:
    """One unit of the fictive tree (IE, SI or OE); what `write_sortree` writes for it."""

    level: str
    sor_id: int
    name: str
    type_code: int | None  # OwnerType (IE) / InstitutionType (SI) / UnitType (OE)
    first_from: date
    from_date: date
    updated: date
    to_date: date | None = None
    shak: str | None = None
    provider_id: str | None = None
    pharmacy_id: str | None = None
    ean: int | None = None  # own EAN block
    ean_inherited: bool = False  # SI/OE without own EAN: inherit (true) or none (false)
    region_code: int | None = None  # written in the own EAN block
    postal: Address | None = None
    visiting: Address | None = None
    virtual: VirtualAddress | None = None
    specialities: tuple[int, ...] = ()
    reporting: bool | None = None  # hospital OEs carry OrganizationalUnitInformation
    replaces: list[int] | None = None
    replaced_by: list[int] | None = None
    children: list[GenUnit] = field(default_factory=list)

    def walk(self) -> Iterator[GenUnit]:
        yield self
        for child in self.children:
            yield from child.walk()


@dataclass(slots=True)
class SnapshotModel:
    snapshot_date: date
    owners: list[GenUnit]
    seed: int
    next_sequence: int  # SOR running number for the next new unit
    next_gln: int
    next_ydernummer: int
    next_pharmacy: int

    def units(self) -> Iterator[GenUnit]:
        for owner in self.owners:
            yield from owner.walk()

    def __len__(self) -> int:
        return sum(1 for _ in self.units())


class _Builder:
    def __init__(self, seed: int, snapshot: date) -> None:
        self.rng = random.Random(seed)
        self.snapshot = snapshot
        self.sequence = 10_001
        self.gln = 100_000
        self.yder = 2_001
        self.pharmacy = 101
        self.made = 0
        self.hospital_codes = [
            list(range(1000 + r * 1800, 1000 + (r + 1) * 1800)) for r in range(len(REGIONS))
        ]
        for codes in self.hospital_codes:
            self.rng.shuffle(codes)
        self.ydernumre: list[str] = []

    # --- identifiers -----------------------------------------------------------------------
    def sor_id(self) -> int:
        value = int(make_sor_id(self.sequence))
        self.sequence += 1
        self.made += 1
        return value

    def new_gln(self) -> int:
        value = int(make_gln(f"579{self.gln:09d}"))
        self.gln += 1
        return value

    def ydernummer(self) -> str:
        if self.ydernumre and self.rng.random() < 0.01:
            return self.rng.choice(self.ydernumre)  # the same ydernummer on two practices
        value = f"{self.yder:06d}"
        self.yder += 1
        self.ydernumre.append(value)
        return value

    # --- attributes ------------------------------------------------------------------------
    def day_between(self, start: date, end: date) -> date:
        span = (end - start).days
        return start + timedelta(days=self.rng.randrange(span)) if span > 0 else start

    def dates(self, not_before: date = date(1995, 1, 1)) -> tuple[date, date, date]:
        """(FirstFromDate, FromDate, UpdatedAt)."""
        first = self.day_between(not_before, self.snapshot - timedelta(days=60))
        current = first
        if self.rng.random() < 0.3:
            current = self.day_between(first, self.snapshot - timedelta(days=2))
        return first, current, current

    def town(self, region: int) -> tuple[str, str, int]:
        return self.rng.choice(TOWNS[region])

    def address(self, town: tuple[str, str, int]) -> Address:
        return Address(
            street=self.rng.choice(STREETS),
            building=str(self.rng.randrange(1, 140)),
            postcode=town[1],
            district=town[0],
            country="DK",
        )

    def phone(self) -> str:
        return str(self.rng.randrange(20_000_000, 99_999_999))

    def person(self) -> str:
        return f"{self.rng.choice(_FIRST)} {self.rng.choice(_LAST)}"

    def maybe_close(self, unit: GenUnit, p: float) -> None:
        if self.rng.random() < p:
            start = max(unit.from_date, self.snapshot - timedelta(days=3 * 365))
            unit.to_date = self.day_between(start, self.snapshot - timedelta(days=1))
            unit.updated = unit.to_date

    def unit(self, level: str, name: str, type_code: int | None, **kw: object) -> GenUnit:
        first, current, updated = self.dates()
        return GenUnit(level, self.sor_id(), name, type_code, first, current, updated, **kw)  # type: ignore[arg-type]

    # --- owners ----------------------------------------------------------------------------
    def region_owner(self, r: int) -> GenUnit:
        code, name, _lo, _hi = REGIONS[r]
        town = self.town(r)
        owner = self.unit("IE", name, OWNER_REGION)
        owner.ean = self.new_gln()
        owner.region_code = code
        owner.postal = self.address(town)
        slug = _ascii(name)
        owner.virtual = VirtualAddress(
            email=f"kontakt@{slug}.example", website=f"www.{slug}.example", phone=self.phone()
        )
        return owner

    def hospital(self, r: int, budget: int) -> GenUnit:
        rng = self.rng
        town = self.town(r)
        shak = str(self.hospital_codes[r].pop())
        pattern = rng.choice(("{} Sygehus", "Regionshospitalet {}", "Hospitalsenheden {}"))
        name = pattern.format(town[0])
        si = self.unit("SI", name, HOSPITAL, shak=shak)
        si.postal = self.address(town)
        slug = _ascii(name)
        si.virtual = VirtualAddress(
            email=f"post@{slug}.example", website=f"www.{slug}.example", phone=self.phone()
        )
        if rng.random() < 0.3:
            si.ean, si.region_code = self.new_gln(), REGIONS[r][0]
        departments = iter(range(1, 100))
        while self.made < budget:
            if rng.random() < 0.08:
                center = self.oe_hospital(si, f"Center for {rng.choice(_CENTER_WORDS)}", None,
                                          ADMINISTRATIVE, (), r)  # fmt: skip
                si.children.append(center)
                for _ in range(rng.randrange(1, 4)):
                    if self.made >= budget:
                        break
                    dept = self.department(center, shak, departments, r, budget)
                    if dept is None:
                        break
                    center.children.append(dept)
            else:
                dept = self.department(si, shak, departments, r, budget)
                if dept is None:
                    break
                si.children.append(dept)
        return si

    def oe_hospital(
        self,
        parent: GenUnit,
        name: str,
        shak: str | None,
        unit_type: int,
        specialities: tuple[int, ...],
        r: int,
    ) -> GenUnit:
        rng = self.rng
        oe = self.unit("OE", name, unit_type, shak=shak, specialities=specialities)
        oe.reporting = shak is not None and len(shak) == 7
        if rng.random() < 0.25:
            oe.ean, oe.region_code = self.new_gln(), REGIONS[r][0]
        else:
            oe.ean_inherited = parent.ean is not None or (
                parent.ean_inherited and rng.random() < 0.7
            )
        if rng.random() < 0.15:
            base = parent.postal
            town = (base.district or "", base.postcode or "", 0) if base else self.town(r)
            oe.postal = self.address(town)
        if rng.random() < 0.1:
            oe.visiting = self.address(self.town(r))
        if rng.random() < 0.5:
            oe.virtual = VirtualAddress(phone=self.phone())
        return oe

    def department(
        self, parent: GenUnit, hospital_shak: str, numbers: Iterator[int], r: int, budget: int
    ) -> GenUnit | None:
        rng = self.rng
        number = next(numbers, None)
        if number is None:
            return None
        speciality = rng.choice(HOSPITAL_SPECIALITIES)
        text = SPECIALITY_TEXTS[speciality]
        shak = f"{hospital_shak}{number:02d}"
        dept = self.oe_hospital(parent, f"Afdeling for {text}", shak, CLINICAL, (speciality,), r)
        codes = iter(dict.fromkeys(rng.sample(_SHAK_SECTION_CHARS, 20)))
        for _ in range(rng.randrange(1, 7)):
            if self.made >= budget:
                break
            self.section(dept, shak, codes, speciality, text, r, budget, 0)
        self.maybe_close(dept, 0.01)
        return dept

    def section(
        self,
        parent: GenUnit,
        dept_shak: str,
        codes: Iterator[str],
        speciality: int,
        text: str,
        r: int,
        budget: int,
        level: int,
    ) -> None:
        rng = self.rng
        with_shak = level == 0 or rng.random() < 0.6
        code = next(codes, None) if with_shak else None
        words = _SECTION_WORDS if code is not None else _TEAM_WORDS
        name = f"{text.capitalize()}, {rng.choice(words)} {rng.randrange(1, 20)}"
        specialities: tuple[int, ...] = (speciality,)
        if rng.random() < 0.1:
            specialities = (speciality, rng.choice(HOSPITAL_SPECIALITIES))
        shak = f"{dept_shak}{code}" if code is not None else None
        unit = self.oe_hospital(parent, name, shak, rng.choice(SECTION_TYPES), specialities, r)
        parent.children.append(unit)
        # Deeper units: more often below a section; some SHAK units sit below a unit without
        # one (NSP loses them).
        if level < 2 and self.made < budget and rng.random() < (0.3 if shak else 0.5):
            for _ in range(rng.randrange(1, 3)):
                if self.made >= budget:
                    break
                self.section(unit, dept_shak, codes, speciality, text, r, budget, level + 1)
        if not unit.children:  # closed units are leaves: their units moved on before
            self.maybe_close(unit, 0.04)

    def private_owner(
        self, r: int, name: str, town: tuple[str, str, int] | None = None
    ) -> tuple[GenUnit, tuple[str, str, int]]:
        town = town or self.town(r)
        owner = self.unit("IE", name, OWNER_PRIVATE)
        owner.ean, owner.region_code = self.new_gln(), REGIONS[r][0]
        owner.postal = self.address(town)
        owner.virtual = VirtualAddress(phone=self.phone(), fax=self.phone())
        return owner, town

    def practice(self, r: int, budget: int) -> GenUnit:
        rng = self.rng
        specialist = rng.random() < 0.2
        doctor = self.person()
        owner, town = self.private_owner(r, doctor)
        if specialist:
            speciality = rng.choice(SPECIALIST_SPECIALITIES)
            name = f"Speciallæge i {SPECIALITY_TEXTS[speciality]} {doctor}"
        else:
            speciality = GP_SPECIALITY
            name = rng.choice((f"{doctor} & co", f"Lægerne {owner.postal.street}",  # type: ignore[union-attr]
                               f"Lægehuset {town[0]}", doctor))  # fmt: skip
        kind = SPECIALIST_PRACTICE if specialist else GENERAL_PRACTICE
        si = self.unit("SI", name, kind, ean_inherited=True)
        count = 1 if rng.random() < 0.7 else rng.randrange(2, 5)
        count = max(1, min(count, budget - self.made))
        for i in range(count):
            oe = self.unit(
                "OE",
                doctor if i == 0 else self.person(),
                None,
                provider_id=self.ydernummer(),
                ean_inherited=True,
                specialities=(speciality,),
            )
            if rng.random() < 0.1:
                oe.ean_inherited, oe.ean, oe.region_code = False, self.new_gln(), REGIONS[r][0]
            if rng.random() < 0.2:
                oe.virtual = VirtualAddress(
                    email=f"laege{oe.provider_id}@praksis.example", phone=self.phone()
                )
            self.maybe_close(oe, 0.03)
            si.children.append(oe)
        owner.children.append(si)
        if rng.random() < 0.02:  # a closed practice: the institution and its units
            self.maybe_close(si, 1.0)
            for oe in si.children:
                if oe.to_date is None:
                    oe.to_date = si.to_date
        return owner

    def pharmacy_tree(self, r: int, budget: int) -> GenUnit:
        rng = self.rng
        town = self.town(r)
        owner, town = self.private_owner(r, f"{town[0]} Apotek", town)
        name = owner.name
        si = self.unit("SI", name, PHARMACY, ean_inherited=True)
        number = self.pharmacy
        self.pharmacy += 1
        for filial in range(1, 1 + max(1, min(rng.randrange(1, 5), budget - self.made))):
            oe = self.unit("OE", name if filial == 1 else f"{name}, filial {rng.choice(STREETS)}",
                           None, pharmacy_id=f"{number},{filial}", ean_inherited=True)  # fmt: skip
            if filial > 1:
                oe.postal = self.address(self.town(r))
                if rng.random() < 0.3:
                    oe.ean_inherited, oe.ean = False, self.new_gln()
                    oe.region_code = REGIONS[r][0]
            self.maybe_close(oe, 0.01)
            si.children.append(oe)
        owner.children.append(si)
        return owner

    def other(self, r: int) -> GenUnit:
        rng = self.rng
        kind = rng.choice(OTHER_INSTITUTION_TYPES)
        municipal = kind == 264361005
        town = self.town(r)
        if municipal:
            owner = self.unit("IE", f"{town[0]} Kommune", OWNER_MUNICIPALITY)
            owner.postal = self.address(town)
            owner.virtual = VirtualAddress(phone=self.phone())
        else:
            owner, town = self.private_owner(r, self.person())
        si = self.unit("SI", f"{OTHER_NAMES[kind]} {town[0]}", kind, ean_inherited=not municipal)
        oe = self.unit("OE", si.name, None, ean_inherited=not municipal)
        si.children.append(oe)
        owner.children.append(si)
        return owner


_CENTER_WORDS = ("Kræft", "Hjerte og Lunge", "Akutmedicin", "Kirurgi", "Psykiatri", "Diagnostik")


def generate(units: int, *, seed: int = 0, snapshot_date: date = FIRST_SNAPSHOT) -> SnapshotModel:
    """A fictive SOR tree of exactly `units` units (at least 5: the regions)."""
    b = _Builder(seed, snapshot_date)
    regions = [b.region_owner(r) for r in range(len(REGIONS))]
    owners: list[GenUnit] = list(regions)
    target = max(units, len(REGIONS))
    rng = b.rng
    # Shares of the tree by kind (not real statistics; a plausible mix).
    hospital_budget = b.made + int((target - b.made) * 0.45)
    practice_budget = hospital_budget + int((target - b.made) * 0.38)
    pharmacy_budget = practice_budget + int((target - b.made) * 0.10)
    hospitals: list[GenUnit] = []
    r = 0
    while b.made + 4 <= hospital_budget:
        size = min(hospital_budget, b.made + max(8, int(rng.gauss(120, 50))))
        if not b.hospital_codes[r]:
            break
        si = b.hospital(r, size)
        regions[r].children.append(si)
        hospitals.append(si)
        r = (r + 1) % len(REGIONS)
    while b.made + 3 <= practice_budget:
        owners.append(b.practice(rng.randrange(len(REGIONS)), practice_budget))
    while b.made + 4 <= pharmacy_budget:
        owners.append(b.pharmacy_tree(rng.randrange(len(REGIONS)), pharmacy_budget))
    while b.made + 3 <= target:
        owners.append(b.other(rng.randrange(len(REGIONS))))
    # Whatever is left (0-2 units): small units under the last owner's institution.
    last = owners[-1]
    while b.made < target:
        host = last.children[-1] if last.children else last
        level = "OE" if host.level in ("SI", "OE") else "SI"
        child = b.unit(level, f"{host.name}, udekørende funktion", None, ean_inherited=True)
        if level == "SI":
            child.type_code = OTHER_INSTITUTION_TYPES[0]
        host.children.append(child)
    _link_replacements(owners)
    return SnapshotModel(
        snapshot_date=snapshot_date,
        owners=owners,
        seed=seed,
        next_sequence=b.sequence,
        next_gln=b.gln,
        next_ydernummer=b.yder,
        next_pharmacy=b.pharmacy,
    )


def _link_replacements(owners: list[GenUnit]) -> None:
    """Half of the closed units get a replaced-by link to an open sibling (one that started
    after the closure if any), as SOR records a reorganisation; the other half stay closed
    without a successor (`evolve` reopens only those). No random draws: the rest of the tree
    stays as it was."""
    closed = 0
    stack = list(owners)
    while stack:
        parent = stack.pop()
        stack.extend(parent.children)
        for old in parent.children:
            if old.level != "OE" or old.to_date is None or old.replaced_by:
                continue
            closed += 1
            if closed % 2:
                continue
            open_siblings = [u for u in parent.children if u.level == "OE" and u.to_date is None]
            # a successor started after the closure if there is one; else the unit merged
            # into an existing sibling
            later = [u for u in open_siblings if u.from_date > old.to_date]
            candidates = later or open_siblings
            if candidates:
                successor = candidates[0]
                old.replaced_by = [successor.sor_id]
                successor.replaces = [*(successor.replaces or []), old.sor_id]


# --- evolve -----------------------------------------------------------------------------------
# `evolve` is a sequence of named steps over one `_Day`; each step makes one kind of change and
# says whether it found somewhere to make it. The order of random draws is part of the output
# (same seed, same bytes), so a step draws exactly what it needs, in a fixed order.

CHANGE_KINDS = ("rename", "address", "move", "close", "new", "shak", "reopen")


@dataclass(slots=True)
class _Place:
    unit: GenUnit
    parent: GenUnit | None
    institution: GenUnit | None
    depth: int


def _places(model: SnapshotModel) -> list[_Place]:
    out: list[_Place] = []

    def visit(unit: GenUnit, parent: GenUnit | None, si: GenUnit | None, depth: int) -> None:
        out.append(_Place(unit, parent, si, depth))
        for child in unit.children:
            visit(child, unit, unit if unit.level == "SI" else si, depth + 1)

    for owner in model.owners:
        visit(owner, None, None, 0)
    return out


@dataclass(slots=True)
class _Day:
    """One `evolve` run: the new snapshot day, the builder that draws random values and hands
    out new SOR ids, GLNs, ydernumre and pharmacy numbers, and where every unit sits in the
    tree (kept current as units move or are added)."""

    day: date
    b: _Builder
    places: list[_Place]
    by_id: dict[int, _Place]  # id(unit) → its place
    shak_in_use: set[str]

    @property
    def rng(self) -> random.Random:
        return self.b.rng


def _begin_day(model: SnapshotModel, seed: int) -> _Day:
    """Start the day after `model`'s snapshot, continuing its counters, seeded by model and day."""
    day = model.snapshot_date + timedelta(days=1)
    b = _Builder(0, day)
    b.rng = random.Random(f"{model.seed}:{seed}:{day.isoformat()}")
    b.sequence, b.gln = model.next_sequence, model.next_gln
    b.yder, b.pharmacy = model.next_ydernummer, model.next_pharmacy
    places = _places(model)
    return _Day(
        day=day,
        b=b,
        places=places,
        by_id={id(p.unit): p for p in places},
        shak_in_use={p.unit.shak for p in places if p.unit.shak},
    )


def _end_day(model: SnapshotModel, s: _Day) -> None:
    """Stamp `model` with the new day and the counters the day's new units advanced."""
    model.snapshot_date = s.day
    model.next_sequence, model.next_gln = s.b.sequence, s.b.gln
    model.next_ydernummer, model.next_pharmacy = s.b.yder, s.b.pharmacy


def _touch(unit: GenUnit, day: date) -> None:
    unit.from_date = unit.updated = day


def _pick(s: _Day, ok: Callable[[_Place], bool], tries: int = 200) -> _Place | None:
    """A random place that passes `ok`, or None after `tries` misses."""
    for _ in range(tries):
        place = s.rng.choice(s.places)
        if ok(place):
            return place
    return None


def _is_open_oe(p: _Place) -> bool:
    return p.unit.level == "OE" and p.unit.to_date is None and p.parent is not None


def _is_hospital_oe(p: _Place) -> bool:
    return _is_open_oe(p) and p.institution is not None and p.institution.type_code == HOSPITAL


def _is_open_below_owner(p: _Place) -> bool:
    return p.unit.level != "IE" and p.unit.to_date is None


def _rename(s: _Day) -> bool:
    """An open SI or OE gets a new name (its base name with another suffix)."""
    place = _pick(s, _is_open_below_owner)
    if place is None:
        return False
    base = place.unit.name.split(" - ")[0]
    place.unit.name = f"{base} - {s.rng.choice(_RENAME_SUFFIXES)}"
    _touch(place.unit, s.day)
    return True


def _readdress(s: _Day) -> bool:
    """An open SI or OE gets a new postal address in the same town."""
    place = _pick(s, _is_open_below_owner)
    if place is None:
        return False
    town = place.unit.postal
    district = town.district if town and town.district else TOWNS[0][0][0]
    postcode = town.postcode if town and town.postcode else TOWNS[0][0][1]
    place.unit.postal = s.b.address((district, postcode, 0))
    _touch(place.unit, s.day)
    return True


def _move(s: _Day) -> bool:
    """An open OE moves, with its subtree: within its hospital, or to another practice or
    pharmacy of the same kind."""
    place = _pick(s, lambda p: _is_open_oe(p) and p.institution is not None)
    if place is None or place.institution is None or place.parent is None:
        return False
    unit, si = place.unit, place.institution
    if si.type_code == HOSPITAL:
        banned = {id(u) for u in unit.walk()}
        candidates = [
            u for u in si.walk() if u.level == "OE" and id(u) not in banned
            and u is not place.parent and u.to_date is None
        ]  # fmt: skip
    else:  # a practice or pharmacy unit moves to another institution of the same kind
        candidates = [
            p.unit for p in s.places[:: max(1, len(s.places) // 5000)]
            if p.unit.level == "SI" and p.unit.type_code == si.type_code
            and p.unit is not si and p.unit.to_date is None
        ]  # fmt: skip
    if not candidates:
        return False
    target = s.rng.choice(candidates)
    place.parent.children.remove(unit)
    target.children.append(unit)
    new_si = target if target.level == "SI" else si
    for moved in unit.walk():
        s.by_id[id(moved)].institution = new_si
    place.parent = target
    _touch(unit, s.day)
    return True


def _close(s: _Day) -> bool:
    """An open OE closes yesterday and a successor ("(ny)", a new SOR id, a new own EAN if it
    had one) replaces it today, taking over its children."""
    place = _pick(s, lambda p: _is_open_oe(p) and not p.unit.replaced_by)
    if place is None or place.parent is None:
        return False
    day, old = s.day, place.unit
    old.to_date = day - timedelta(days=1)
    old.updated = day
    new = GenUnit(
        "OE", s.b.sor_id(), old.name.split(" - ")[0] + " (ny)", old.type_code, day, day, day,
        shak=old.shak, provider_id=old.provider_id, pharmacy_id=old.pharmacy_id,
        ean=old.ean, ean_inherited=old.ean_inherited, region_code=old.region_code,
        postal=old.postal, visiting=old.visiting, virtual=old.virtual,
        specialities=old.specialities, reporting=old.reporting, replaces=[old.sor_id],
    )  # fmt: skip
    if new.ean is not None:
        new.ean = s.b.new_gln()
    old.replaced_by = [new.sor_id]
    new.children, old.children = old.children, []
    siblings = place.parent.children
    siblings.insert(siblings.index(old) + 1, new)
    new_place = _Place(new, place.parent, place.institution, place.depth)
    s.places.append(new_place)
    s.by_id[id(new)] = new_place
    for child in new.children:
        s.by_id[id(child)].parent = new
    return True


def _new_unit(s: _Day) -> bool:
    """An open institution gains a unit: a hospital section with a free 7-character SHAK, a
    practitioner with a new ydernummer, or a pharmacy branch with the next filialnummer."""
    place = _pick(s, lambda p: p.unit.level == "SI" and p.unit.to_date is None)
    if place is None:
        return False
    si, day, rng = place.unit, s.day, s.rng
    kind = si.type_code
    if kind == HOSPITAL:
        depts = [c for c in si.children if c.shak and len(c.shak) == 6 and c.to_date is None]
        if not depts:
            return False
        dept = rng.choice(depts)
        free = [c for c in _SHAK_SECTION_CHARS if dept.shak + c not in s.shak_in_use]  # type: ignore[operator]
        if not free:
            return False
        shak = f"{dept.shak}{rng.choice(free)}"
        s.shak_in_use.add(shak)
        text = SPECIALITY_TEXTS.get(dept.specialities[0], "klinik") if dept.specialities else ""
        name = f"{text.capitalize()}, nyt afsnit"
        unit = GenUnit("OE", s.b.sor_id(), name, CLINICAL, day, day, day, shak=shak,
                       specialities=dept.specialities, reporting=True)  # fmt: skip
        parent = dept
    elif kind in (GENERAL_PRACTICE, SPECIALIST_PRACTICE):
        spec = si.children[0].specialities if si.children else (GP_SPECIALITY,)
        unit = GenUnit("OE", s.b.sor_id(), s.b.person(), None, day, day, day,
                       provider_id=s.b.ydernummer(), ean_inherited=True,
                       specialities=spec)  # fmt: skip
        parent = si
    elif kind == PHARMACY:
        numbers = [c.pharmacy_id for c in si.children if c.pharmacy_id]
        if not numbers:
            return False
        apotek = numbers[0].split(",")[0]
        filial = 1 + max(int(n.split(",")[1]) for n in numbers if n and "," in n)
        name = f"{si.name}, filial {rng.choice(STREETS)}"
        unit = GenUnit("OE", s.b.sor_id(), name, None, day, day, day,
                       pharmacy_id=f"{apotek},{filial}", ean_inherited=True)  # fmt: skip
        parent = si
    else:
        return False
    parent.children.append(unit)
    new_place = _Place(unit, parent, si, s.by_id[id(parent)].depth + 1)
    s.places.append(new_place)
    s.by_id[id(unit)] = new_place
    return True


def _shak_move(s: _Day) -> bool:
    """A deep hospital OE's SHAK code moves to an open sibling (one without SHAK if any; else
    the two swap codes)."""
    place = _pick(s, lambda p: _is_hospital_oe(p) and p.unit.shak is not None and p.depth >= 3)
    if place is None or place.parent is None:
        return False
    giver = place.unit
    siblings = [u for u in place.parent.children if u is not giver and u.to_date is None]
    takers = [u for u in siblings if u.shak is None] or siblings
    if not takers:
        return False
    taker = s.rng.choice(takers)
    giver.shak, taker.shak = taker.shak, giver.shak
    _touch(giver, s.day)
    _touch(taker, s.day)
    return True


def _reopen(s: _Day) -> bool:
    """A closed unit without a successor opens again (its end date removed)."""
    place = _pick(s, lambda p: p.unit.to_date is not None and not p.unit.replaced_by, 2000)
    if place is None:
        return False
    place.unit.to_date = None
    place.unit.updated = s.day  # FromDate stays: NSP sees a later validTo only
    return True


_STEPS: dict[str, Callable[[_Day], bool]] = {
    "rename": _rename, "address": _readdress, "move": _move, "close": _close, "new": _new_unit,
    "shak": _shak_move, "reopen": _reopen,
}  # fmt: skip


def evolve(model: SnapshotModel, changes: int, *, seed: int = 0) -> SnapshotModel:
    """The next day's snapshot: `changes` changes, cycling through every kind (rename, address,
    move, closure with a successor, new unit, SHAK moving to another unit, reopening); a change
    that finds nowhere to apply becomes a rename.

    Changes `model` in place and returns it (copying a million-unit tree would cost more than
    generating it again from the same seed).
    """
    s = _begin_day(model, seed)
    for i in range(changes):
        if not _STEPS[CHANGE_KINDS[i % len(CHANGE_KINDS)]](s):
            _rename(s)
    _end_day(model, s)
    return model


# --- writing ----------------------------------------------------------------------------------

_HEAD = (
    "\ufeff"
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<SorTree xmlns:xkom-1="http://rep.oio.dk/xkom.dk/xml/schemas/2006/01/06/"\n'
    '         xmlns:dkcc="http://rep.oio.dk/ebxml/xml/schemas/dkcc/2003/02/13/"\n'
    '         xmlns:dkcc2005="http://rep.oio.dk/ebxml/xml/schemas/dkcc/2005/03/15/"\n'
    '         xmlns:xkom="http://rep.oio.dk/xkom.dk/xml/schemas/2005/03/15/"\n'
    '         xmlns="urn:oio:sundhedsstyrelsen:organisation:1.0.0">\n'
)


def _esc(text: str) -> str:
    if "&" in text or "<" in text or ">" in text:
        text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text


def _address(tag: str, a: Address, out: list[str]) -> None:
    out.append(f"<{tag}><xkom-1:AddressPostal>")
    if a.street is not None:
        out.append(f"<dkcc2005:StreetName>{_esc(a.street)}</dkcc2005:StreetName>")
    if a.building is not None:
        out.append(
            f"<dkcc:StreetBuildingIdentifier>{_esc(a.building)}</dkcc:StreetBuildingIdentifier>"
        )
    if a.postcode is not None:
        out.append(f"<dkcc2005:PostCodeIdentifier>{_esc(a.postcode)}</dkcc2005:PostCodeIdentifier>")
    if a.district is not None:
        out.append(f"<dkcc2005:DistrictName>{_esc(a.district)}</dkcc2005:DistrictName>")
    if a.country is not None:
        out.append(
            '<dkcc:CountryIdentificationCode scheme="iso3166-alpha2">'
            f"{_esc(a.country)}</dkcc:CountryIdentificationCode>"
        )
    out.append(f"</xkom-1:AddressPostal></{tag}>\n")


def _virtual(v: VirtualAddress, out: list[str]) -> None:
    out.append("<VirtualAddressInformation>")
    if v.email is not None:
        out.append(f"<xkom:EmailAddressIdentifier>{_esc(v.email)}</xkom:EmailAddressIdentifier>")
    if v.website is not None:
        out.append(f"<Website>{_esc(v.website)}</Website>")
    out.append(
        f"<TelephoneNumberIdentifier>{_esc(v.phone or '00000000')}</TelephoneNumberIdentifier>"
    )
    if v.fax is not None:
        out.append(f"<FaxNumberIdentifier>{_esc(v.fax)}</FaxNumberIdentifier>")
    out.append("</VirtualAddressInformation>\n")


def _ean_block(u: GenUnit, out: list[str]) -> None:
    out.append(
        f"<EanLocationCodeEntity>\n<EanLocationCode>{u.ean}</EanLocationCode>\n"
        "<OnlyInternalIndicator>false</OnlyInternalIndicator>\n"
        "<NonActiveIndicator>false</NonActiveIndicator>\n"
        "<SystemSupplier>641000055002</SystemSupplier>\n<SystemType>1611000045003</SystemType>\n"
        "<CommunicationSupplier>41000035001</CommunicationSupplier>\n"
        f"<RegionCode>{u.region_code or 1084}</RegionCode>\n"
        "<EdiAdministrator>116</EdiAdministrator>\n"
        f"<SorStatus><FromDate>{u.first_from.isoformat()}</FromDate>"
        f"<FirstFromDate>{u.first_from.isoformat()}</FirstFromDate></SorStatus>\n"
        "</EanLocationCodeEntity>\n"
    )


def _status(u: GenUnit, out: list[str]) -> None:
    to = f"<ToDate>{u.to_date.isoformat()}</ToDate>" if u.to_date is not None else ""
    out.append(
        f"<SorStatus><FromDate>{u.from_date.isoformat()}</FromDate>{to}"
        f"<UpdatedAt>{u.updated.isoformat()}</UpdatedAt>"
        f"<FirstFromDate>{u.first_from.isoformat()}</FirstFromDate></SorStatus>\n"
    )


def _ids(tag: str, ids: list[int] | None, out: list[str]) -> None:
    if ids:
        inner = "".join(f"<SorIdentifier>{i}</SorIdentifier>" for i in ids)
        out.append(f"<{tag}>{inner}</{tag}>\n")


def _write_unit(u: GenUnit, out: list[str], hospital: bool) -> None:
    if u.level == "IE":
        out.append(
            f"<InstitutionOwnerEntity>\n<InstitutionOwner>\n<SorIdentifier>{u.sor_id}</SorIdentifier>\n"
            f"<EntityName>{_esc(u.name)}</EntityName>\n<OwnerType>{u.type_code}</OwnerType>\n"
        )
        if u.ean is not None:
            _ean_block(u, out)
        _address("PostalAddressInformation", u.postal or Address(), out)
        _virtual(u.virtual or VirtualAddress(), out)
        _status(u, out)
        out.append("</InstitutionOwner>\n")
        for child in u.children:
            _write_unit(child, out, False)
        out.append("</InstitutionOwnerEntity>\n")
        return
    si = u.level == "SI"
    element = "HealthInstitution" if si else "OrganizationalUnit"
    out.append(
        f"<{element}Entity>\n<{element}>\n<SorIdentifier>{u.sor_id}</SorIdentifier>\n"
        f"<EntityName>{_esc(u.name)}</EntityName>\n"
    )
    if si:
        out.append(f"<InstitutionType>{u.type_code}</InstitutionType>\n")
        hospital = u.type_code == HOSPITAL
    elif u.type_code is not None:
        out.append(f"<UnitType>{u.type_code}</UnitType>\n")
    if u.pharmacy_id is not None:
        out.append(f"<PharmacyIdentifier>{u.pharmacy_id}</PharmacyIdentifier>\n")
    if u.shak is not None:
        out.append(f"<ShakIdentifier>{u.shak}</ShakIdentifier>\n")
    if u.provider_id is not None:
        out.append(f"<ProviderIdentifier>{u.provider_id}</ProviderIdentifier>\n")
    out.append("<OptionalEanLocationCode>")
    if u.ean is not None:
        out.append("\n")
        _ean_block(u, out)
    else:
        inherited = "true" if u.ean_inherited else "false"
        out.append(f"<EntityInheritedIndicator>{inherited}</EntityInheritedIndicator>")
    out.append(
        "</OptionalEanLocationCode>\n<GeographicalParent><GeographicalParentRelation>"
        f"{1 if si else 2}</GeographicalParentRelation></GeographicalParent>\n"
    )
    if u.postal is not None:
        _address("PostalAddressInformation", u.postal, out)
    if u.visiting is not None:
        _address("VisitingAddressInformation", u.visiting, out)
    if u.virtual is not None:
        _virtual(u.virtual, out)
    if u.specialities and not si:
        out.append("<ClinicalSpecialityCollection>")
        for i, code in enumerate(u.specialities):
            kind = MAIN_SPECIALITY_TYPE if i == 0 else "61000095004"
            out.append(
                f"<ClinicalSpeciality><SpecialityCode>{code}</SpecialityCode>"
                f"<SpecialityType>{kind}</SpecialityType></ClinicalSpeciality>"
            )
        out.append("</ClinicalSpecialityCollection>\n")
    _status(u, out)
    _ids("ReplacesEntityCollection", u.replaces, out)
    _ids("ReplacedByEntityCollection", u.replaced_by, out)
    if hospital and not si:
        flag = "true" if u.reporting else "false"
        out.append(
            "<OrganizationalUnitInformation><AmbulantActivityIndicator>true"
            "</AmbulantActivityIndicator><PatientsAdmittedIndicator>"
            f"{flag}</PatientsAdmittedIndicator><ReportingLevelIndicator>{flag}"
            "</ReportingLevelIndicator></OrganizationalUnitInformation>\n"
        )
    out.append(f"</{element}>\n")
    for child in u.children:
        _write_unit(child, out, hospital)
    out.append(f"</{element}Entity>\n")


def created_at(model: SnapshotModel) -> datetime:
    d = model.snapshot_date
    return datetime(d.year, d.month, d.day, tzinfo=TZ)


def write_sortree(model: SnapshotModel, out: BinaryIO) -> int:
    """Write the model as SorTree XML (UTF-8 with BOM, like SOR's files). Returns bytes written."""
    written = 0

    def flush(parts: list[str]) -> None:
        nonlocal written
        data = "".join(parts).encode("utf-8")
        out.write(data)
        written += len(data)
        parts.clear()

    parts: list[str] = [
        _HEAD,
        f"<CreatedAtTime>{created_at(model).isoformat()}</CreatedAtTime>\n",
        f"<SnapshotDate>{model.snapshot_date.isoformat()}</SnapshotDate>\n",
    ]
    for owner in model.owners:
        _write_unit(owner, parts, False)
        if len(parts) > 20_000:
            flush(parts)
    parts.append("</SorTree>\n")
    flush(parts)
    return written
