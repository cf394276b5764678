"""Registry of the KRS datatypes sorsync replicates, and the fields each one carries.

The field lists follow NSP's view definitions for SOR v1 (krs-protocol §6.1), in feed order.
Everything that depends on the shape of a datatype — replica tables, the feed parser, the
simulator's rendering — reads it from here, so adding a datatype is one entry in `DATATYPES`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum


class FieldType(Enum):
    BIGINT = "bigint"
    TEXT = "text"
    TIMESTAMP = "timestamptz"


@dataclass(frozen=True, slots=True)
class Field:
    element: str  # the element name on the wire (lowerCamel for SOR)
    column: str  # the replica column (snake_case)
    type: FieldType


@dataclass(frozen=True, slots=True)
class Datatype:
    register: str
    datatype: str
    version: int
    fields: tuple[Field, ...]
    namespace: str  # namespace of the record element and its children

    @property
    def key(self) -> str:
        """The `register/datatype/vN` form used in configuration and NSP permissions."""
        return f"{self.register}/{self.datatype}/v{self.version}"

    @property
    def table(self) -> str:
        """Replica table name inside schema `krs`."""
        return f"{self.register}_{self.datatype}_v{self.version}"

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
DEFAULT_DATATYPES: tuple[str, ...] = tuple(DATATYPES)


def get(key: str) -> Datatype:
    """Look up `register/datatype/vN`; KeyError names what is known."""
    try:
        return DATATYPES[key]
    except KeyError:
        known = ", ".join(DATATYPES)
        raise KeyError(f"unknown KRS datatype {key!r}; known: {known}") from None
