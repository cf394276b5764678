"""Registry of the KRS datatypes sorsync replicates, and how each one is stored.

Two storages:
* **columns** — the five legacy SOR v1 views, whose fields NSP's own view definitions fix
  (docs/reference/krs-protocol.md): one typed column per field, in feed order, plus `extra`
  (jsonb) for elements the registry does not know.
* **document** — every other datatype, SOR2 (`sor/v2/<datatype>/v1`) above all: each record is
  kept whole, as jsonb in column `record`, whatever its fields are called. Typed columns are
  views over it, built from the mapping (`sorsync.mapping`), so a mapping change never loses data
  and never needs a re-sync.

`lookup(key)` takes any `register/datatype/vN` or `register/vR/datatype/vN` key: a datatype the
registry does not know replicates as a document.

Adding a datatype touches more than this registry (the mapping, the simulator, the tests and the
docs): the checklist is in docs/development.md, "Adding a field or a datatype".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Literal


class FieldType(Enum):
    BIGINT = "bigint"
    TEXT = "text"
    TIMESTAMP = "timestamptz"


@dataclass(frozen=True, slots=True)
class Field:
    element: str  # the element name on the wire (lowerCamel for SOR)
    column: str  # the replica column (snake_case)
    type: FieldType


Storage = Literal["columns", "document"]


@dataclass(frozen=True, slots=True)
class Datatype:
    register: str
    datatype: str
    version: int
    fields: tuple[Field, ...]  # typed columns (storage "columns"); empty for a document
    namespace: str | None  # of the record element; None = any (recorded, not assumed)
    register_version: int = 1  # KRS `registerVersion`; 1 is what NSP assumes when it is omitted
    storage: Storage = "columns"

    @property
    def key(self) -> str:
        """`register/datatype/vN`, or `register/vR/datatype/vN` for a register version above 1:
        the form used in configuration, NSP permissions, sync state and metrics."""
        if self.register_version == 1:
            return f"{self.register}/{self.datatype}/v{self.version}"
        return f"{self.register}/v{self.register_version}/{self.datatype}/v{self.version}"

    @property
    def table(self) -> str:
        """Replica table name inside schema `krs`."""
        if self.register_version == 1:
            return f"{self.register}_{self.datatype}_v{self.version}"
        return f"{self.register}_v{self.register_version}_{self.datatype}_v{self.version}"

    @property
    def is_document(self) -> bool:
        return self.storage == "document"

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(f.column for f in self.fields)

    def field_by_element(self) -> dict[str, Field]:
        return {f.element: f for f in self.fields}


_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def snake_case(element: str) -> str:
    """`overafdelingSorNummer` → `overafdeling_sor_nummer`."""
    return _CAMEL.sub("_", element).lower()


B, T, D = FieldType.BIGINT, FieldType.TEXT, FieldType.TIMESTAMP
SOR_NAMESPACE = "http://nsi.dk/-/stamdata/3.0/sor"


def _sor(datatype: str, *fields: tuple[str, FieldType]) -> Datatype:
    return Datatype(
        register="sor",
        datatype=datatype,
        version=1,
        fields=tuple(Field(name, snake_case(name), kind) for name, kind in fields),
        namespace=SOR_NAMESPACE,
    )


_ADDRESS = (("telefon", T), ("vejnavn", T), ("postnummer", T), ("bynavn", T))
_VIRTUAL = (("email", T), ("www", T))
_VALIDITY = (("validFrom", D), ("validTo", D))

SYGEHUS = _sor(
    "sygehus",
    ("sorNummer", B),
    ("eanLokationsnummer", B),
    ("nummer", T),
    ("navn", T),
    *_ADDRESS,
    *_VIRTUAL,
    *_VALIDITY,
)
SYGEHUSAFDELING = _sor(
    "sygehusafdeling",
    ("sorNummer", B),
    ("sygehusSorNummer", B),
    ("overafdelingSorNummer", B),
    ("underlagtSygehusSorNummer", B),
    ("eanLokationsnummer", B),
    ("afdelingTypeKode", B),
    ("afdelingTypeTekst", T),
    ("hovedSpecialeKode", T),
    ("hovedSpecialeTekst", T),
    ("nummer", T),
    ("navn", T),
    *_ADDRESS,
    *_VIRTUAL,
    *_VALIDITY,
)
PRAKSIS = _sor(
    "praksis",
    ("sorNummer", B),
    ("eanLokationsnummer", B),
    ("regionCode", B),
    ("navn", T),
    *_VALIDITY,
)
YDER = _sor(
    "yder",
    ("sorNummer", B),
    ("praksisSorNummer", B),
    ("eanLokationsnummer", B),
    ("nummer", T),
    ("navn", T),
    *_ADDRESS,
    *_VIRTUAL,
    ("hovedSpecialeKode", T),
    ("hovedSpecialeTekst", T),
    *_VALIDITY,
)
APOTEK = _sor(
    "apotek",
    ("sorNummer", B),
    ("apotekNummer", B),
    ("filialNummer", B),
    ("eanLokationsnummer", B),
    ("cvr", B),
    ("pcvr", B),
    ("navn", T),
    *_ADDRESS,
    *_VIRTUAL,
    *_VALIDITY,
)

DATATYPES: dict[str, Datatype] = {
    dt.key: dt for dt in (SYGEHUS, SYGEHUSAFDELING, PRAKSIS, YDER, APOTEK)
}
V1_DATATYPES: tuple[str, ...] = tuple(DATATYPES)

# SOR2 as NSP serves it since 2022 (docs/sor2.md). Which of these a source really has is
# confirmed with `sorsync krs describe`; names marked inferred there may differ.
SOR2_DATATYPES: tuple[str, ...] = (
    "sor/v2/sorentity/v1",
    "sor/v2/shaksormap/v1",
    "sor/v2/sorreplacedentity/v1",
)
# SOR2 datatypes beyond that set which sorsync maps (a `sor` view) and the simulator serves,
# replicated when named in SORSYNC_KRS_DATATYPES. Named as the file export names them
# (docs/files.md); `sorsync krs describe` confirms a name against a real source before it may
# join the default set.
SOR2_OPTIONAL_DATATYPES: tuple[str, ...] = ("sor/v2/eanlocationcode/v1",)
DEFAULT_DATATYPES: tuple[str, ...] = SOR2_DATATYPES
DEMO_DATATYPES: tuple[str, ...] = (*V1_DATATYPES, *SOR2_DATATYPES)  # one tree feeds both

_NAME = r"[a-z][a-z0-9]*"
_KEY = re.compile(rf"^({_NAME})/(?:v([1-9][0-9]?)/)?({_NAME})/v([1-9][0-9]?)$")


class KeyFormatError(ValueError):
    """A datatype key that is neither `register/datatype/vN` nor `register/vR/datatype/vN`."""


def parse_key(key: str) -> tuple[str, int, str, int]:
    """`sor/v2/sorentity/v1` → ("sor", 2, "sorentity", 1); `sor/sygehus/v1` → ("sor", 1, …)."""
    match = _KEY.match(key)
    if match is None:
        raise KeyFormatError(
            f"{key!r} is not a KRS datatype key: write register/datatype/vN (sor/sygehus/v1) or"
            " register/vR/datatype/vN (sor/v2/sorentity/v1), lower case"
        )
    register, register_version, datatype, version = match.groups()
    return register, int(register_version or 1), datatype, int(version)


def document(register: str, register_version: int, datatype: str, version: int) -> Datatype:
    """A datatype stored as whole records (any fields, any record namespace)."""
    return Datatype(
        register=register,
        datatype=datatype,
        version=version,
        fields=(),
        namespace=None,
        register_version=register_version,
        storage="document",
    )


def lookup(key: str) -> Datatype:
    """The datatype of `key`: a registered one, or a document datatype for any other
    well-formed key (KeyFormatError for a malformed one)."""
    known = DATATYPES.get(key)
    if known is not None:
        return known
    register, register_version, datatype, version = parse_key(key)
    canonical = document(register, register_version, datatype, version)
    known = DATATYPES.get(canonical.key)  # e.g. "sor/v1/sygehus/v1" is "sor/sygehus/v1"
    return known if known is not None else canonical


def get(key: str) -> Datatype:
    """Look up a registered (typed-column) datatype; KeyError names what is known."""
    try:
        return DATATYPES[key]
    except KeyError:
        known = ", ".join(DATATYPES)
        raise KeyError(f"unknown KRS datatype {key!r}; known: {known}") from None
