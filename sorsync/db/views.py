"""The `sor` views and the SOR2 lookup indexes, built from the mapping (`sorsync.mapping`).

Migrations own the tables; this module owns what is derived from the mapping, because an operator
may change the mapping (SORSYNC_MAPPING_FILE) and that must never need a migration or a re-sync:

* one typed view per mapped SOR2 datatype (`sor.sorentity`, `sor.shaksormap`,
  `sor.sorreplacedentity`): every row, one column per mapped field, read from `record`;
* `sor.unit` (every version of every unit), `sor.unit_current` and `sor.shak_map`, which answer
  from SOR2 when its `sorentity` holds rows and from the five v1 tables otherwise;
* expression indexes on the SOR2 tables for every lookup, named after what they index so that a
  changed expression gets a new index and the stale one is dropped. The name search's trigram
  GIN is built only on a table that holds rows: an empty table gets it from the first full that
  fills it, after its rows (`indexes_by_table`), which costs less than keeping it up row by row
  (docs/performance.md).

`ensure(engine, mapping)` applies all of it in one transaction when the mapping's fingerprint (or
this module's `VERSION`) differs from what `krs.mapping_state` records, or a table with rows
lacks an index; readers see the old views or the new ones. Columns are only ever
appended to `sor.unit`, so views that analysts built on it survive (CREATE OR REPLACE VIEW).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

import psycopg
from psycopg.types.json import Jsonb
from sqlalchemy import Engine

from sorsync.datatypes import DATATYPES, Datatype, lookup
from sorsync.db.locks import advisory_lock
from sorsync.db.models import KRS_SCHEMA
from sorsync.mapping import DatatypeMapping, Kind, SorMapping

VERSION = 8  # bump when the SQL below changes, so every database rebuilds its views
LOCK_NAME = "views"
MAX_KEY_BYTES = 1000  # the longest text a lookup's btree index takes (`expression`)
OPEN_END = "DATE '2999-01-01'"  # NSP writes 2999-12-31 (or 9999-12-31) for "no end"

# Kinds of SOR2 units as sor.unit names them: the v1 kinds where the unit is of that kind, else
# the SOR level in words.
SOR2_KINDS = ("institutionsejer", "sundhedsinstitution", "organisationsenhed")


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _table(mapping: DatatypeMapping) -> str:
    return f'{KRS_SCHEMA}."{lookup(mapping.key).table}"'


def expression(mapping: DatatypeMapping, column: str, alias: str | None = "r") -> str:
    """The SQL that reads mapped `column` from a row `alias` of the datatype's table (no alias:
    as an index expression)."""
    fld = mapping.field(column)
    record = "record" if alias is None else f"{alias}.record"
    raw = f"({record} ->> {_lit(fld.element)})"
    if fld.kind is not Kind.TEXT:
        return f"sor.as_{fld.kind.value}{raw}"
    if (mapping.role, column) in _BTREE_KEYS:
        # No code is this long, and a longer text would not fit a btree entry (~2 700 bytes):
        # it reads as NULL here (the record keeps it), so it cannot stop a sync.
        return f"CASE WHEN octet_length({raw}) <= {MAX_KEY_BYTES} THEN NULLIF({raw}, '') END"
    return f"NULLIF({raw}, '')"


def _current(mapping: DatatypeMapping, alias: str = "r") -> str:
    """Rows still current in NSP's table (technical validity: ValidTo not passed)."""
    valid_to = expression(mapping, "nsp_valid_to", alias)
    return f"({valid_to} IS NULL OR {valid_to} >= {OPEN_END} OR {valid_to} > now())"


def business_validity(from_date: str, to_date: str) -> tuple[str, str]:
    """(valid_from, valid_to) as sor.unit holds them, from SQL giving FromDate and ToDate: the
    Danish midnight starting FromDate, and the one after ToDate, which SOR2 gives as the last
    valid day (inclusive; docs/sor2.md); NULL for an open end (no ToDate, or one in NSP's
    far-future "no end" years)."""
    return (
        f"sor.day_start({from_date})",
        f"CASE WHEN {to_date} IS NULL OR {to_date} >= {OPEN_END} THEN NULL"
        f" ELSE sor.day_start({to_date} + 1) END",
    )


def typed_view(mapping: DatatypeMapping) -> str:
    columns = ",\n       ".join(
        f'{expression(mapping, f.column)} AS "{f.column}"' for f in mapping.fields
    )
    return (
        f'CREATE VIEW sor."{mapping.view}" AS\n'
        f"SELECT r.pid, r.modified_at, r.token, r.record_namespace,\n       {columns},\n"
        f"       r.record\n  FROM {_table(mapping)} r"
    )


# --- sor.unit -----------------------------------------------------------------------------------

V1_UNIT_COLUMNS = (
    "sor_id, kind, name, shak, ydernummer, ean, parent_sor_id, hospital_sor_id, praksis_sor_id,"
    " street, postcode, city, phone, email, www, specialty_code, specialty_text, valid_from,"
    " valid_to, pid, modified_at"
)
# Appended to sor.unit for SOR2 (NULL in the v1 branches).
SOR2_UNIT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("datatype", "text"),
    ("sor_type", "text"),
    ("entity_type", "text"),
    ("organisational_level_code", "text"),
    ("organisational_level_name", "text"),
    ("health_institution_name", "text"),
    ("institution_owner_sor_id", "bigint"),
    ("institution_owner_name", "text"),
    ("institution_owner_type", "text"),
    ("institution_owner_cvr", "text"),
    ("specialities", "jsonb"),
    ("addresses", "jsonb"),
    ("replaced_by", "bigint[]"),
    ("nsp_valid_from", "timestamptz"),
    ("nsp_valid_to", "timestamptz"),
)

_V1_BRANCHES = (
    (
        "sor/sygehus/v1",
        "s",
        "s.sor_nummer, 'sygehus'::text, s.navn, s.nummer, NULL::text, s.ean_lokationsnummer,"
        " NULL::bigint, s.sor_nummer, NULL::bigint, s.vejnavn, s.postnummer, s.bynavn,"
        " s.telefon, s.email, s.www, NULL::text, NULL::text",
    ),
    (
        "sor/sygehusafdeling/v1",
        "a",
        "a.sor_nummer, 'sygehusafdeling'::text, a.navn, a.nummer, NULL::text,"
        " a.ean_lokationsnummer,"
        " COALESCE(a.overafdeling_sor_nummer, a.sygehus_sor_nummer,"
        " a.underlagt_sygehus_sor_nummer),"
        " COALESCE(a.underlagt_sygehus_sor_nummer, a.sygehus_sor_nummer), NULL::bigint,"
        " a.vejnavn, a.postnummer, a.bynavn, a.telefon, a.email, a.www, a.hoved_speciale_kode,"
        " a.hoved_speciale_tekst",
    ),
    (
        "sor/praksis/v1",
        "p",
        "p.sor_nummer, 'praksis'::text, p.navn, NULL::text, NULL::text, p.ean_lokationsnummer,"
        " NULL::bigint, NULL::bigint, p.sor_nummer, NULL::text, NULL::text, NULL::text,"
        " NULL::text, NULL::text, NULL::text, NULL::text, NULL::text",
    ),
    (
        "sor/yder/v1",
        "y",
        "y.sor_nummer, 'yder'::text, y.navn, NULL::text, y.nummer, y.ean_lokationsnummer,"
        " y.praksis_sor_nummer, NULL::bigint, y.praksis_sor_nummer, y.vejnavn, y.postnummer,"
        " y.bynavn, y.telefon, y.email, y.www, y.hoved_speciale_kode, y.hoved_speciale_tekst",
    ),
    (
        "sor/apotek/v1",
        "ap",
        "ap.sor_nummer, 'apotek'::text, ap.navn, NULL::text, NULL::text, ap.ean_lokationsnummer,"
        " NULL::bigint, NULL::bigint, NULL::bigint, ap.vejnavn, ap.postnummer, ap.bynavn,"
        " ap.telefon, ap.email, ap.www, NULL::text, NULL::text",
    ),
)


# The kinds of the five v1 branches (their second column), in the same order.
V1_KINDS = tuple(columns.split(", ")[1].split("'")[1] for _, _, columns in _V1_BRANCHES)


def _kind(e: str) -> str:
    """A SOR2 unit's kind: hospital, department, practice, yder unit or pharmacy where the
    health institution's type says so, else the level (SorType) in words."""
    institution = f"lower(coalesce({e}.health_institution_type_name, {e}.entity_type_name, ''))"
    return (
        f"CASE WHEN {e}.sor_type = 'IE' THEN 'institutionsejer'"
        f" WHEN {institution} ~ '(sygehus|hospital)'"
        f" THEN CASE WHEN {e}.sor_type = 'SI' THEN 'sygehus' ELSE 'sygehusafdeling' END"
        f" WHEN {institution} ~ 'apotek' THEN 'apotek'"
        f" WHEN {institution} ~ 'praksis'"
        f" THEN CASE WHEN {e}.sor_type = 'SI' THEN 'praksis'"
        f" WHEN {e}.ydernummer IS NOT NULL THEN 'yder' ELSE 'organisationsenhed' END"
        f" WHEN {e}.sor_type = 'SI' THEN 'sundhedsinstitution'"
        " ELSE 'organisationsenhed' END"
    )


def _addresses(e: str) -> str:
    from sorsync.mapping import ADDRESS_PARTS, ADDRESS_PREFIXES

    parts = []
    for address in ADDRESS_PREFIXES:
        fields = ", ".join(
            f"{_lit(column)}, {e}.{address}_{column}" for column, _, _ in ADDRESS_PARTS
        )
        parts.append(
            f"{_lit(address)}, NULLIF(jsonb_strip_nulls(jsonb_build_object({fields})),"
            " '{}'::jsonb)"
        )
    return f"NULLIF(jsonb_strip_nulls(jsonb_build_object({', '.join(parts)})), '{{}}'::jsonb)"


def _specialities(e: str) -> str:
    from sorsync.mapping import SPECIALITIES

    rows = ", ".join(
        f"({n}, {e}.speciality_{n}_code, {e}.speciality_{n}_name)"
        for n in range(1, SPECIALITIES + 1)
    )
    return (
        "(SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object('code', s.code, 'name', s.name))"
        f" ORDER BY s.n) FROM (VALUES {rows}) s(n, code, name)"
        " WHERE s.code IS NOT NULL OR s.name IS NOT NULL)"
    )


def sor2_unit_branch(mapping: SorMapping) -> str:
    """The SOR2 units as rows of sor.unit (technically current rows only)."""
    ent = mapping.role("sorentity")
    replaced = mapping.role("sorreplacedentity")
    typed = ", ".join(f'{expression(ent, f.column)} AS "{f.column}"' for f in ent.fields)
    inner = f"SELECT r.pid, r.modified_at, {typed} FROM {_table(ent)} r WHERE {_current(ent)}"
    replaced_by = (
        f"ARRAY(SELECT DISTINCT {expression(replaced, 'replaced_by_sor_id', 'x')}"
        f" FROM {_table(replaced)} x"
        f" WHERE {expression(replaced, 'sor_id', 'x')} = e.sor_id AND {_current(replaced, 'x')}"
        f" AND {expression(replaced, 'replaced_by_sor_id', 'x')} IS NOT NULL ORDER BY 1)"
    )
    kind = _kind("e")
    valid_from, valid_to = business_validity("e.from_date", "e.to_date")
    return (
        "SELECT e.sor_id, k.kind, e.entity_name, e.shak, e.ydernummer, e.ean,"
        " COALESCE(e.parent_sor_id, CASE e.sor_type WHEN 'OE' THEN e.health_institution_sor_id"
        " WHEN 'SI' THEN e.institution_owner_sor_id END),"
        " CASE WHEN k.kind IN ('sygehus', 'sygehusafdeling')"
        " THEN COALESCE(e.health_institution_sor_id, e.sor_id) END,"
        " CASE WHEN k.kind IN ('praksis', 'yder')"
        " THEN COALESCE(e.health_institution_sor_id, e.sor_id) END,"
        " NULLIF(concat_ws(' ', e.postal_street_name, e.postal_street_building_id), ''),"
        " e.postal_postcode, e.postal_district_name, e.phone, e.email, e.website,"
        " e.speciality_1_code, e.speciality_1_name,"
        f" {valid_from}, {valid_to},"
        " e.pid, e.modified_at,"
        f" {_lit(ent.key)}::text, e.sor_type, e.entity_type_name,"
        " e.organisational_level_code, e.organisational_level_name,"
        " e.health_institution_name, e.institution_owner_sor_id, e.institution_owner_name,"
        " e.institution_owner_type_name, e.institution_owner_cvr,"
        f" {_specialities('e')}, {_addresses('e')}, {replaced_by},"
        " e.nsp_valid_from,"
        f" CASE WHEN e.nsp_valid_to >= {OPEN_END} THEN NULL ELSE e.nsp_valid_to END"
        f" FROM ({inner}) e CROSS JOIN LATERAL (SELECT {kind} AS kind) k"
    )


@dataclass(frozen=True, slots=True)
class Sources:
    """Which replica the views answer from, decided by what holds rows: SOR2's sorentity, else
    the five v1 views; SOR2's shaksormap for SHAK codes, else the units' own. Decided when the
    views are built (each sync checks), not per query: a view that chose per query (NOT EXISTS
    in each branch) kept PostgreSQL from using the lookup indexes in joins."""

    sor2_units: bool
    shak_from_map: bool
    fictive: bool = False  # the replica comes from the built-in simulator (sorsync.sync.binding)

    @property
    def label(self) -> str:
        units = "sor2" if self.sor2_units else "v1"
        units = f"{units}+map" if self.shak_from_map else units
        return f"{units}+fictive" if self.fictive else units


def unit_view(mapping: SorMapping, sources: Sources) -> str:
    nulls = ", ".join(f"NULL::{sql_type}" for _, sql_type in SOR2_UNIT_COLUMNS[1:])
    branches = [
        f"SELECT {columns}, {alias}.valid_from, {alias}.valid_to, {alias}.pid,"
        f" {alias}.modified_at, {_lit(key)}::text, {nulls}"
        f' FROM {KRS_SCHEMA}."{DATATYPES[key].table}" {alias}'
        for key, alias, columns in _V1_BRANCHES
    ]
    if sources.sor2_units:
        branches = [sor2_unit_branch(mapping)]
    names = V1_UNIT_COLUMNS + ", " + ", ".join(name for name, _ in SOR2_UNIT_COLUMNS)
    body = "\nUNION ALL\n".join(branches)
    # A UNION takes its column names from its first branch; naming them on the whole is simpler.
    return f"CREATE OR REPLACE VIEW sor.unit ({names}) AS\n{body}"


def unit_link_view(mapping: SorMapping, sources: Sources) -> str:
    """Child → parent links as sor.unit's parent_sor_id defines them, one branch per way a
    parent is written down, so that "the children of X" is an index scan in every branch."""
    head = "CREATE OR REPLACE VIEW sor.unit_link (sor_id, parent_sor_id, valid_from, valid_to) AS"
    if not sources.sor2_units:
        return f"""{head}
SELECT a.sor_nummer, a.overafdeling_sor_nummer, a.valid_from, a.valid_to
  FROM krs.sor_sygehusafdeling_v1 a
UNION ALL
SELECT a.sor_nummer, a.underlagt_sygehus_sor_nummer, a.valid_from, a.valid_to
  FROM krs.sor_sygehusafdeling_v1 a
 WHERE a.overafdeling_sor_nummer IS NULL
   AND COALESCE(a.sygehus_sor_nummer, a.underlagt_sygehus_sor_nummer)
       = a.underlagt_sygehus_sor_nummer
UNION ALL
SELECT y.sor_nummer, y.praksis_sor_nummer, y.valid_from, y.valid_to FROM krs.sor_yder_v1 y
"""
    ent = mapping.role("sorentity")
    ent_valid = ", ".join(
        business_validity(expression(ent, "from_date"), expression(ent, "to_date"))
    )
    sor_id, parent = expression(ent, "sor_id"), expression(ent, "parent_sor_id")
    # The WHERE of the last two branches is the predicate of their partial indexes (INDEXED).
    return f"""{head}
SELECT {sor_id}, {parent}, {ent_valid} FROM {_table(ent)} r WHERE {_current(ent)}
UNION ALL
SELECT {sor_id}, {expression(ent, "health_institution_sor_id")}, {ent_valid}
  FROM {_table(ent)} r WHERE {_without_parent(ent, "OE")} AND {_current(ent)}
UNION ALL
SELECT {sor_id}, {expression(ent, "institution_owner_sor_id")}, {ent_valid}
  FROM {_table(ent)} r WHERE {_without_parent(ent, "SI")} AND {_current(ent)}
"""


UNIT_CURRENT = """
CREATE OR REPLACE VIEW sor.unit_current AS
SELECT * FROM sor.unit
 WHERE (valid_from IS NULL OR valid_from <= now())
   AND (valid_to IS NULL OR now() < valid_to)
"""


def shak_map_view(mapping: SorMapping, sources: Sources) -> str:
    """SHAK → SOR: from shaksormap where it holds rows, else from the units' own SHAK codes."""
    if not sources.shak_from_map:
        return """
CREATE OR REPLACE VIEW sor.shak_map AS
SELECT shak, sor_id, kind, valid_from, valid_to FROM sor.unit WHERE shak IS NOT NULL
"""
    m = mapping.role("shaksormap")
    valid_from, valid_to = business_validity(expression(m, "from_date"), expression(m, "to_date"))
    return f"""
CREATE OR REPLACE VIEW sor.shak_map AS
SELECT m.shak, m.sor_id, (SELECT u.kind FROM sor.unit u WHERE u.sor_id = m.sor_id
                           ORDER BY u.valid_from DESC NULLS LAST LIMIT 1) AS kind,
       m.valid_from, m.valid_to
  FROM (SELECT {expression(m, "shak")} AS shak, {expression(m, "sor_id")} AS sor_id,
               {valid_from} AS valid_from, {valid_to} AS valid_to
          FROM {_table(m)} r WHERE {_current(m)}) m
 WHERE m.shak IS NOT NULL AND m.sor_id IS NOT NULL
"""


# --- resolving (code, date) pairs -------------------------------------------------------------

# The one implementation of the back-mapping rules (docs/back-mapping.md): which units a code of
# a kind has on a day, and which of them are the answer. _rules writes them once, over a set of
# items; sor.resolve_items applies them to a batch and sor.resolve_item to one item. Everything
# else calls those: sor.resolve (batches: POST /v1/resolve, its CSV and NDJSON streams,
# `sorsync resolve`), the analysts' sor.resolve_code and sor.shak_to_sor, and the API's single
# lookups and POST /v1/shak/resolve (sorsync/lookup/units.py), which join the answer to the full
# sor.unit row. So every way of asking gives the same answer (tests/e2e/test_resolve_semantics.py).
#
# Every branch is an index lookup on the views (sor.shak_map.shak, sor.unit.sor_id, .ean,
# .ydernummer), gated by the item's kind. Candidates are the units valid on the day (one version
# each); a candidate whose parent is also a candidate inherits the code from it and is dropped;
# one unit left = found, several = ambiguous (all of them returned).
# The functions have no SET clause and are one SELECT, so PostgreSQL inlines sor.resolve_item
# into the query that calls it (a single lookup stays one plan, cached as a prepared statement,
# with the branches of other kinds folded away when the kind is a literal).
RESOLVE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("status", "text"),
    ("sor_id", "bigint"),
    ("name", "text"),
    ("kind", "text"),
    ("shak", "text"),
    ("health_institution_sor_id", "bigint"),
    ("health_institution_name", "text"),
    ("organisational_level_code", "text"),
    ("organisational_level_name", "text"),
    ("valid_from", "date"),
    ("valid_to", "date"),
)
# sor.resolve_item's columns: the version it picked (pid, validity as stored) and the unit's own
# health institution name; sor.resolve looks up the hospital's or practice's name and gives
# the validity as Danish dates.
ITEM_COLUMNS: tuple[tuple[str, str], ...] = (
    ("status", "text"),
    ("sor_id", "bigint"),
    ("pid", "bigint"),
    ("name", "text"),
    ("kind", "text"),
    ("shak", "text"),
    ("institution_sor_id", "bigint"),
    ("health_institution_name", "text"),
    ("organisational_level_code", "text"),
    ("organisational_level_name", "text"),
    ("valid_from", "timestamptz"),
    ("valid_to", "timestamptz"),
)
_RESOLVE_OUT = ", ".join(f"{name} {sql_type}" for name, sql_type in RESOLVE_COLUMNS)
_ITEM_OUT = ", ".join(f"{name} {sql_type}" for name, sql_type in ITEM_COLUMNS)
_AT = "(u.valid_from IS NULL OR u.valid_from <= i.at) AND (u.valid_to IS NULL OR i.at < u.valid_to)"
_AT_MAP = _AT.replace("u.", "m.")
# Only what the answer needs: u.* would also compute SOR2's addresses, specialities and successors.
_PICK = ", ".join(
    f"u.{c}"
    for c in [
        "sor_id",
        "name",
        "kind",
        "shak",
        "parent_sor_id",
        "hospital_sor_id",
        "praksis_sor_id",
        "health_institution_name",
        "organisational_level_code",
        "organisational_level_name",
        "valid_from",
        "valid_to",
        "pid",
    ]
)
_PICK_SPAN = f"{_PICK}, m.valid_from AS map_from, m.valid_to AS map_to"
_LOCAL = "AT TIME ZONE 'Europe/Copenhagen'"
# The spellings a ydernummer may be stored under (as sorsync.lookup.ydernummer_variants), as a
# function rather than an ARRAY(subquery) in the branch: a call is an index condition per item,
# and `ydernummer IS NOT NULL` then folds away the v1 branches without one. With the subquery,
# PostgreSQL 15 made it an InitPlan evaluated once for a whole batch (every item got the first
# item's answer; tests/e2e/test_resolve_semantics.py caught it).
YDER_VARIANTS = """
CREATE OR REPLACE FUNCTION sor.ydernummer_variants(code text) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
SELECT ARRAY(SELECT lpad(b.bare, w, '0')
               FROM (SELECT COALESCE(NULLIF(ltrim(code, '0'), ''), '0') AS bare) b,
                    generate_series(length(b.bare), 9) w)
$$"""


def _shak_candidates(
    mapping: SorMapping, sources: Sources, items: str, *, dated: bool = True
) -> str:
    """The SHAK branch of the rules: the units shak_map gives the item's code, valid that day.

    A SHAK's unit is of the kind shak_map gives it. SOR2 has one sor.unit branch, and its
    shak_map kind (the latest version's) is not used. With v1 units and shak_map read from them,
    a join of the two views on `u.kind = m.kind` probed all five unit tables for every hit (the
    kind differs between shak_map's branches, so the planner cannot drop any); one branch per
    kind, with the kind a constant on both sides, leaves one table each (the same rows).
    """
    # Undated (sor.resolve_timeline): every version of every candidate, and the mapping's own
    # validity beside it.
    what, when = (_PICK, f" AND {_AT_MAP} AND {_AT}") if dated else (_PICK_SPAN, "")
    head = (
        f"SELECT i.ord, {what} FROM {items}, sor.shak_map m JOIN sor.unit u ON u.sor_id = m.sor_id"
        f" WHERE i.kind = 'shak' AND m.shak = i.code{when}"
    )
    if sources.sor2_units or sources.shak_from_map:
        same_kind = f"(u.datatype = {_lit(mapping.role('sorentity').key)} OR u.kind = m.kind)"
        return f"{head}\n                 AND {same_kind}"
    return "\n              UNION ALL\n              ".join(
        f"{head}\n                 AND m.kind = {_lit(kind)} AND u.kind = {_lit(kind)}"
        for kind in V1_KINDS
    )


def _rules(mapping: SorMapping, sources: Sources, items: str, *, one: bool = False) -> str:
    """The back-mapping rules over the items `i(kind, code, at, ord)` that the SELECT `items`
    gives, as one set: each item's candidates (the units valid at `at` that carry the code),
    one version each; a candidate whose parent is a candidate of the same item is dropped; one
    left is found, several ambiguous, none not_found. One row per (item, answering unit), or
    one of NULLs for an item without any: ord and then ITEM_COLUMNS.

    Set-based rather than an item at a time (a LATERAL per item): the candidates of a batch
    come from one join per branch and the rule is one window over them. With `one` (a single
    item), `items` is written into each branch instead of a CTE, so that PostgreSQL folds its
    kind, a literal in a single lookup, and drops the other kinds' branches; planned with them,
    the ydernummer branch's estimate started JIT (seconds) for a lookup of a millisecond.
    """
    i = f"({items}) i" if one else "i"
    head = "WITH" if one else f"WITH i AS ({items}),"
    return f"""
{head} c AS (
  SELECT DISTINCT ON (u.ord, u.sor_id) u.*
    FROM ({_shak_candidates(mapping, sources, i)}
          UNION ALL
          SELECT i.ord, {_PICK} FROM {i}, sor.unit u
           WHERE i.kind = 'sor' AND u.sor_id = sor.as_bigint(i.code) AND {_AT}
          UNION ALL
          SELECT i.ord, {_PICK} FROM {i}, sor.unit u
           WHERE i.kind = 'ean' AND u.ean = sor.as_bigint(i.code) AND {_AT}
          UNION ALL
          SELECT i.ord, {_PICK} FROM {i}, sor.unit u
           WHERE i.kind = 'ydernummer' AND u.ydernummer IS NOT NULL
             AND u.ydernummer = ANY(sor.ydernummer_variants(i.code)) AND {_AT}) u
   ORDER BY u.ord, u.sor_id, u.valid_from NULLS FIRST, u.pid),
r AS (
  SELECT c.*, count(*) OVER (PARTITION BY c.ord) AS n FROM c
   WHERE c.parent_sor_id IS NULL
      OR NOT EXISTS (SELECT 1 FROM c p WHERE p.ord = c.ord AND p.sor_id = c.parent_sor_id))
SELECT i.ord,
       CASE WHEN r.sor_id IS NULL THEN 'not_found' WHEN r.n = 1 THEN 'found'
            ELSE 'ambiguous' END,
       r.sor_id, r.pid, r.name, r.kind, r.shak,
       COALESCE(r.hospital_sor_id, r.praksis_sor_id), r.health_institution_name,
       r.organisational_level_code, r.organisational_level_name, r.valid_from, r.valid_to
  FROM {i} LEFT JOIN r ON r.ord = i.ord"""


# The items of sor.resolve_items (arrays, numbered from 1) and of sor.resolve_item (one).
_BATCH = (
    "SELECT x.kind, x.code, sor.day_start(x.day) AS at, x.ord"
    " FROM unnest(kinds, codes, days) WITH ORDINALITY AS x(kind, code, day, ord)"
)
_ONE = "SELECT $1 AS kind, $2 AS code, sor.day_start($3) AS at, 1::bigint AS ord"


def _timeline(mapping: SorMapping, sources: Sources) -> str:
    """sor.resolve_timeline: a code's answers over time, the rules of sor.resolve applied once
    per stretch of days in which nothing they read changes.

    Everything the rules read about an item is dated: the SHAK mapping's rows, the versions of
    the units carrying the code and of those units' hospitals or practices. Between two of their
    validity boundaries every condition in _rules and sor.resolve has the same outcome, so the
    answer on the first day of a stretch is the answer on every day of it. The boundaries are
    taken undated from the same candidates (_shak_candidates and the other branches), each
    instant turned into the first day whose start is at or after it (the first day on which
    `_AT` flips); sor.resolve then answers each item on each of those days and on the day before
    the first."""
    span = "NULL::timestamptz AS map_from, NULL::timestamptz AS map_to"
    day = f"(t.b {_LOCAL})::date"
    first_day = f"CASE WHEN sor.day_start({day}) >= t.b THEN {day} ELSE {day} + 1 END"
    columns = ", ".join(f"r.{name}" for name, _ in RESOLVE_COLUMNS)
    return f"""
CREATE OR REPLACE FUNCTION sor.resolve_timeline(kinds text[], codes text[])
RETURNS TABLE (ord bigint, from_day date, {_RESOLVE_OUT})
LANGUAGE sql STABLE PARALLEL SAFE
SET jit = off AS $$
WITH i AS (
  SELECT x.kind, x.code, x.ord FROM unnest(kinds, codes) WITH ORDINALITY AS x(kind, code, ord)),
c AS (
  {_shak_candidates(mapping, sources, "i", dated=False)}
  UNION ALL
  SELECT i.ord, {_PICK}, {span} FROM i, sor.unit u
   WHERE i.kind = 'sor' AND u.sor_id = sor.as_bigint(i.code)
  UNION ALL
  SELECT i.ord, {_PICK}, {span} FROM i, sor.unit u
   WHERE i.kind = 'ean' AND u.ean = sor.as_bigint(i.code)
  UNION ALL
  SELECT i.ord, {_PICK}, {span} FROM i, sor.unit u
   WHERE i.kind = 'ydernummer' AND u.ydernummer IS NOT NULL
     AND u.ydernummer = ANY(sor.ydernummer_variants(i.code))),
t AS (
  SELECT c.ord, x.b FROM c, unnest(ARRAY[c.valid_from, c.valid_to, c.map_from, c.map_to]) x(b)
  UNION ALL
  SELECT c.ord, x.b FROM c
    JOIN sor.unit h ON h.sor_id = COALESCE(c.hospital_sor_id, c.praksis_sor_id)
                   AND h.kind IN ('sygehus', 'praksis'),
         unnest(ARRAY[h.valid_from, h.valid_to]) x(b)),
d AS (
  SELECT DISTINCT t.ord, LEAST({first_day}, DATE '9999-12-31') AS day
    FROM t WHERE isfinite(t.b)),
p AS (
  SELECT d.ord, d.day FROM d
  UNION
  SELECT d.ord, GREATEST(min(d.day) - 1, DATE '0001-01-01') FROM d GROUP BY d.ord
  UNION
  SELECT i.ord, DATE '2000-01-01' FROM i WHERE NOT EXISTS (SELECT 1 FROM d WHERE d.ord = i.ord)),
q AS (
  SELECT array_agg(i.kind ORDER BY p.ord, p.day) AS kinds,
         array_agg(i.code ORDER BY p.ord, p.day) AS codes,
         array_agg(p.day ORDER BY p.ord, p.day) AS days,
         array_agg(p.ord ORDER BY p.ord, p.day) AS ords
    FROM p JOIN i ON i.ord = p.ord)
SELECT q.ords[r.ord::int], q.days[r.ord::int], {columns}
  FROM q, sor.resolve(q.kinds, q.codes, q.days) r
 ORDER BY r.ord, r.sor_id
$$"""


def resolve_functions(mapping: SorMapping, sources: Sources) -> tuple[str, ...]:
    """sor.resolve_items (the rules, _rules), sor.resolve_item and sor.resolve on it, and the
    analysts' functions (with comments)."""
    at_h = _AT.replace("u.", "h.").replace("i.at", "r.at")
    items = ", ".join(name for name, _ in ITEM_COLUMNS)
    return (
        YDER_VARIANTS,
        f"""
CREATE OR REPLACE FUNCTION sor.resolve_items(kinds text[], codes text[], days date[])
RETURNS TABLE (ord bigint, {_ITEM_OUT})
LANGUAGE sql STABLE PARALLEL SAFE AS $$
{_rules(mapping, sources, _BATCH)}
$$""",
        # One item, the same rules: written out rather than as a call of sor.resolve_items, so
        # that PostgreSQL inlines it into a single lookup's query with the item's kind a
        # literal (the other kinds' branches folded away, a few index probes).
        f"""
CREATE OR REPLACE FUNCTION sor.resolve_item(kind text, code text, on_date date)
RETURNS TABLE ({_ITEM_OUT})
LANGUAGE sql STABLE PARALLEL SAFE AS $$
SELECT {items} FROM ({_rules(mapping, sources, _ONE, one=True)}) s ({"ord, " + items})
$$""",
        f"""
CREATE OR REPLACE FUNCTION sor.resolve(kinds text[], codes text[], days date[])
RETURNS TABLE (ord bigint, {_RESOLVE_OUT})
LANGUAGE sql STABLE PARALLEL SAFE
-- The planner's cost for a large batch crosses JIT's threshold; compiling the plan then took
-- seconds for what runs in milliseconds.
SET jit = off AS $$
SELECT r.ord, r.status, r.sor_id, r.name, r.kind, r.shak, r.institution_sor_id,
       COALESCE(h.name, r.health_institution_name),
       r.organisational_level_code, r.organisational_level_name,
       (r.valid_from {_LOCAL})::date, (r.valid_to {_LOCAL})::date
  FROM (SELECT s.*, sor.day_start(days[s.ord::int]) AS at
          FROM sor.resolve_items(kinds, codes, days) s) r
  LEFT JOIN LATERAL (
    SELECT h.name FROM sor.unit h
     WHERE h.sor_id = r.institution_sor_id AND {at_h}
       AND h.kind IN ('sygehus', 'praksis')
     ORDER BY h.valid_from NULLS FIRST, h.pid LIMIT 1
  ) h ON true
 ORDER BY r.ord, r.sor_id
$$""",
        _timeline(mapping, sources),
        f"""
CREATE OR REPLACE FUNCTION sor.resolve_code(kind text, code text,
    on_date date DEFAULT (now() {_LOCAL})::date)
RETURNS TABLE ({_RESOLVE_OUT})
LANGUAGE sql STABLE PARALLEL SAFE AS $$
SELECT {", ".join(name for name, _ in RESOLVE_COLUMNS)}
  FROM sor.resolve(ARRAY[lower(btrim(kind))], ARRAY[upper(btrim(code))], ARRAY[on_date])
$$""",
        f"""
CREATE OR REPLACE FUNCTION sor.shak_to_sor(code text,
    on_date date DEFAULT (now() {_LOCAL})::date)
RETURNS TABLE ({_RESOLVE_OUT})
LANGUAGE sql STABLE PARALLEL SAFE AS $$
SELECT * FROM sor.resolve_code('shak', code, on_date)
$$""",
        "COMMENT ON FUNCTION sor.resolve_items(text[], text[], date[]) IS 'The back-mapping rules"
        " for a batch: item ord of (kinds, codes, days) answered as sor.resolve_item answers it"
        " alone.'",
        "COMMENT ON FUNCTION sor.resolve_item(text, text, date) IS 'The back-mapping rules for one"
        " item (kind shak, sor, ean or ydernummer; code as given; a day): one row per unit that"
        " is the answer (pid = the version valid that day), or one row of NULLs with status"
        " not_found. sor.resolve, sor.resolve_code and the API all answer through it.'",
        "COMMENT ON FUNCTION sor.resolve(text[], text[], date[]) IS 'Back-mapping in bulk:"
        " item i of (kinds, codes, days) - kind shak, sor, ean or ydernummer - answered as rows"
        " with ord = i: one row per unit; status found, ambiguous (several rows) or not_found"
        " (one row of NULLs). Codes are taken as given (upper-case SHAK); see the back-mapping"
        " guide.'",
        "COMMENT ON FUNCTION sor.resolve_timeline(text[], text[]) IS 'What sor.resolve answers"
        " for item ord of (kinds, codes) on every day: one row per unit and stretch of days, the"
        " stretch starting on from_day and lasting until the next from_day of the item (the"
        " first stretch also covers every day before it).'",
        "COMMENT ON FUNCTION sor.resolve_code(text, text, date) IS 'The unit(s) a code of a kind"
        " (shak, sor, ean, ydernummer) meant on a date (default today in Denmark): sor.resolve for"
        " one item.'",
        "COMMENT ON FUNCTION sor.shak_to_sor(text, date) IS 'The SOR unit(s) a SHAK code meant on a"
        " date (default today in Denmark); status found, ambiguous or not_found.'",
    )


# --- indexes ------------------------------------------------------------------------------------

# (role, column, method, only): the lookups' indexes on the SOR2 tables. Every index costs the
# load its expression (a jsonb read of the ~2 KB record) and an insertion per row, so each one
# here serves a lookup (EXPLAIN in docs/performance.md). `only`, when set, names the sor_type of
# the rows without a ParentSorId that sor.unit_link's branch for this column reads: a partial
# index of those few rows, written exactly as that branch's WHERE so the planner proves it.
INDEXED: tuple[tuple[str, str, str, str | None], ...] = (
    ("sorentity", "sor_id", "btree", None),
    ("sorentity", "shak", "btree", None),
    ("sorentity", "ean", "btree", None),
    ("sorentity", "ydernummer", "btree", None),
    ("sorentity", "postal_postcode", "btree", None),  # the search's postcode filter
    ("sorentity", "parent_sor_id", "btree", None),
    ("sorentity", "health_institution_sor_id", "btree", "OE"),
    ("sorentity", "institution_owner_sor_id", "btree", "SI"),
    ("sorentity", "entity_name", "gin", None),
    ("shaksormap", "shak", "btree", None),
    ("shaksormap", "sor_id", "btree", None),
    ("sorreplacedentity", "sor_id", "btree", None),
    ("eanlocationcode", "ean", "btree", None),
)


_BTREE_KEYS = {(role, column) for role, column, method, _ in INDEXED if method == "btree"}


def _without_parent(mapping: DatatypeMapping, sor_type: str, alias: str | None = "r") -> str:
    """Rows of `sor_type` with no ParentSorId (sor.unit_link's second and third branches)."""
    parent = expression(mapping, "parent_sor_id", alias)
    kind = expression(mapping, "sor_type", alias)
    return f"{parent} IS NULL AND {kind} = {_lit(sor_type)}"


class LookupIndex(NamedTuple):
    table: str
    statement: str  # CREATE INDEX IF NOT EXISTS …
    # Left to the first full on an empty table: a GIN built once costs less than kept up row by
    # row, while the btrees cost less kept up (docs/performance.md, measured both ways).
    after_rows: bool


def index_statements(mapping: SorMapping) -> dict[str, LookupIndex]:
    """Index name → its table and CREATE INDEX statement, for the mapping's lookup indexes."""
    out: dict[str, LookupIndex] = {}
    for role, column, method, only in INDEXED:
        dm = mapping.role(role)
        table = lookup(dm.key).table
        expr = expression(dm, column, None)
        where = "" if only is None else f" WHERE {_without_parent(dm, only, None)}"
        digest = hashlib.sha1((expr + where).encode(), usedforsecurity=False).hexdigest()[:8]
        name = f"ixm_{table}_{column}"[:54] + f"_{digest}"
        ops = " gin_trgm_ops" if method == "gin" else ""
        out[name] = LookupIndex(
            table,
            f'CREATE INDEX IF NOT EXISTS "{name}" ON {_table(dm)} USING {method}'
            f" (({expr}){ops}){where}",
            after_rows=method == "gin",
        )
    return out


def indexes_by_table(mapping: SorMapping) -> dict[str, list[str]]:
    """Table → the CREATE INDEX statements that a first full runs once it has loaded the table
    (sorsync.sync.initial): the indexes `ensure` leaves off empty tables."""
    out: dict[str, list[str]] = {}
    for index in index_statements(mapping).values():
        if index.after_rows:
            out.setdefault(index.table, []).append(index.statement)
    return out


# --- applying -----------------------------------------------------------------------------------


def document_table(dt: Datatype) -> str:
    return (
        f'CREATE TABLE IF NOT EXISTS {KRS_SCHEMA}."{dt.table}" ('
        "pid bigint NOT NULL, modified_at timestamptz NOT NULL, token text NOT NULL,"
        f' record_namespace text, record jsonb NOT NULL, CONSTRAINT "pk_{dt.table}"'
        " PRIMARY KEY (pid))"
    )


def fingerprint(mapping: SorMapping, sources: Sources) -> str:
    return f"{VERSION}:{mapping.fingerprint()}:{sources.label}"


def statements(
    mapping: SorMapping, sources: Sources, datatypes: Iterable[Datatype] = ()
) -> list[str]:
    """Everything `ensure` runs, in order, but the indexes (which depend on the rows:
    `_index_work`)."""
    documents = {m.key: lookup(m.key) for m in mapping.datatypes.values()}
    documents.update({dt.key: dt for dt in datatypes if dt.is_document})
    out = [document_table(dt) for dt in documents.values()]
    out += [
        "CREATE SCHEMA IF NOT EXISTS sor",
        *(f'DROP VIEW IF EXISTS sor."{m.view}"' for m in mapping.datatypes.values()),
        *(typed_view(m) for m in mapping.datatypes.values()),
        unit_view(mapping, sources),
        unit_link_view(mapping, sources),
        UNIT_CURRENT,
        shak_map_view(mapping, sources),
        *resolve_functions(mapping, sources),
    ]
    out += _comments(mapping, sources)
    return out


FICTIVE = "FICTIVE DEMO DATA from sorsync's built-in simulator, not SOR. "
VIEW_COMMENTS = {
    "unit": "Every version of every SOR unit, one row per version: from SOR2 (sor/v2/sorentity/v1)"
    " when it is replicated, else from the five v1 views (column datatype says which). Valid on"
    " date D when valid_from <= D and (valid_to IS NULL or D < valid_to).",
    "unit_current": "The versions of sor.unit valid right now. Same columns as sor.unit.",
    "unit_link": "Child to parent links as sor.unit's parent_sor_id defines them (for children).",
    "shak_map": "SHAK code to SOR id with validity: SOR2's shaksormap when it is replicated, else"
    " the units' own SHAK codes. A SHAK code can map to several SOR units on the same date.",
}


def _comments(mapping: SorMapping, sources: Sources) -> list[str]:
    mark = FICTIVE if sources.fictive else ""
    out = [
        f"COMMENT ON VIEW sor.{view} IS {_lit(mark + text)}" for view, text in VIEW_COMMENTS.items()
    ]
    for m in mapping.datatypes.values():
        out.append(
            f'COMMENT ON VIEW sor."{m.view}" IS '
            + _lit(
                mark + f"SOR2 {m.key} ({m.doc}): every row NSP delivered, typed by the mapping; "
                "column record holds the whole record, unmapped fields included."
            )
        )
        for f in m.fields:
            sure = {"C": "confirmed", "I": "inferred", "U": "a guess"}[f.confidence]
            text = f"{f.element} ({f.kind.value}; element name {sure})" + (
                f": {f.doc}" if f.doc else ""
            )
            out.append(f'COMMENT ON COLUMN sor."{m.view}"."{f.column}" IS {_lit(text)}')
    for name, _ in SOR2_UNIT_COLUMNS:
        text = _UNIT_COMMENTS.get(name, "SOR2 only (NULL for units from the v1 views).")
        for view in ("unit", "unit_current"):
            out.append(f'COMMENT ON COLUMN sor."{view}"."{name}" IS {_lit(text)}')
    return out


_UNIT_COMMENTS = {
    "datatype": "The KRS datatype the row comes from (sor/v2/sorentity/v1 or a v1 view).",
    "sor_type": "SOR2: IE institution owner, SI health institution, OE organisational unit.",
    "entity_type": "SOR2: the unit's type in words (EntityTypeName).",
    "specialities": "SOR2: up to eight specialities in priority order, [{code, name}].",
    "addresses": "SOR2: postal, visiting and activity addresses with ETRS89 / UTM zone 32 "
    "coordinates (etrs89_e, etrs89_n; EPSG:25832).",
    "replaced_by": "SOR2: the SOR ids of the units that replaced this one (sorreplacedentity).",
    "nsp_valid_from": "SOR2: when NSP's row became current (technical validity).",
    "nsp_valid_to": "SOR2: when NSP's row stopped being current; NULL = still current.",
}


def ensure(
    engine: Engine,
    mapping: SorMapping,
    datatypes: Iterable[Datatype] = (),
    *,
    force: bool = False,
) -> bool:
    """Build the views and indexes of `mapping` (and tables for `datatypes` stored as
    documents) unless the database already has them; True when something was applied."""
    dts = list(datatypes)
    extra_tables = [dt for dt in dts if dt.is_document]
    raw = engine.raw_connection()
    pg: psycopg.Connection[Any] = raw.driver_connection  # type: ignore[assignment]
    try:
        pg.rollback()
        pg.autocommit = True
        fictive = pg.execute(
            # sorsync.sync.binding names the built-in simulator's data `simulator:…`.
            "SELECT EXISTS (SELECT 1 FROM krs.sync_state WHERE source LIKE 'simulator:%')"
        ).fetchone()
        sources = Sources(
            sor2_units=_has_rows(pg, lookup(mapping.role("sorentity").key).table),
            shak_from_map=_has_rows(pg, lookup(mapping.role("shaksormap").key).table),
            fictive=bool(fictive and fictive[0]),
        )
        wanted = fingerprint(mapping, sources)
        applied = pg.execute("SELECT fingerprint FROM krs.mapping_state WHERE id = 1").fetchone()
        missing = [dt.table for dt in extra_tables if not _table_exists(pg, dt.table)]
        current = not force and applied is not None and applied[0] == wanted and not missing
        if current and not any(_index_work(pg, mapping)):
            return False
        with advisory_lock(engine, LOCK_NAME), pg.transaction():
            pg.execute("SET LOCAL lock_timeout = '60s'")
            for statement in statements(mapping, sources, dts):
                pg.execute(statement)
            create, drop = _index_work(pg, mapping)
            for statement in drop + create:
                pg.execute(statement)
            pg.execute(
                "INSERT INTO krs.mapping_state (id, fingerprint, applied_at, definition)"
                " VALUES (1, %s, now(), %s) ON CONFLICT (id) DO UPDATE SET"
                " fingerprint = excluded.fingerprint, applied_at = excluded.applied_at,"
                " definition = excluded.definition",
                (wanted, Jsonb(describe(mapping))),
            )
        return True
    finally:
        # Back to the pool as SQLAlchemy expects it: not in autocommit.
        if not pg.closed:
            pg.autocommit = False
        raw.close()


def _table_exists(pg: psycopg.Connection[Any], table: str) -> bool:
    row = pg.execute("SELECT to_regclass(%s)", (f'{KRS_SCHEMA}."{table}"',)).fetchone()
    return row is not None and row[0] is not None


def _has_rows(pg: psycopg.Connection[Any], table: str) -> bool:
    if not _table_exists(pg, table):
        return False
    row = pg.execute(f'SELECT EXISTS (SELECT 1 FROM {KRS_SCHEMA}."{table}")').fetchone()
    return bool(row and row[0])


def _index_work(pg: psycopg.Connection[Any], mapping: SorMapping) -> tuple[list[str], list[str]]:
    """(CREATE INDEX for the lookup indexes missing, but those left to a first full on an empty
    table; DROP INDEX for the `ixm_` indexes the mapping no longer names)."""
    wanted = index_statements(mapping)
    tables = sorted({index.table for index in wanted.values()})
    present = {
        name
        for (name,) in pg.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = %s AND tablename = ANY(%s)"
            " AND indexname LIKE 'ixm\\_%%'",
            (KRS_SCHEMA, tables),
        ).fetchall()
    }
    create = [
        index.statement
        for name, index in wanted.items()
        if name not in present and (not index.after_rows or _has_rows(pg, index.table))
    ]
    drop = [f'DROP INDEX {KRS_SCHEMA}."{name}"' for name in sorted(present - wanted.keys())]
    return create, drop


def describe(mapping: SorMapping) -> dict[str, Any]:
    """The mapping as JSON (stored with the views; shown by `sorsync krs describe`)."""
    return {
        m.role: {
            "datatype": m.key,
            "view": f"sor.{m.view}",
            "fields": {
                f.column: {"element": f.element, "type": f.kind.value, "confidence": f.confidence}
                for f in m.fields
            },
        }
        for m in mapping.datatypes.values()
    }
