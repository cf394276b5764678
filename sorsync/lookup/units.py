"""Lookups of SOR units as of a date: each a function building its `Query` (SQL, parameters and
the shaping of its rows, sorsync/lookup/query.py), run by `run(conn, …)` or `await arun(conn, …)`.

Every query reads the `sor` views (sorsync/db/views.py): `sor.unit`, `sor.shak_map` for SHAK
codes and `sor.unit_link` for children. The views' UNION ALL is flattened by PostgreSQL so that
`sor_id = …`, `shak = …`, `ean = …` become index scans on each replica table (indexes of
migration 0002 and of the views module; tests/api/test_lookup.py checks the plans).
Validity is half-open: a version is valid at instant T when `valid_from <= T` and (`valid_to`
is NULL or `T < valid_to`); a date D means the start of D in Europe/Copenhagen, which is how NSP
stores SOR dates (local midnight).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from sorsync.identifiers import normalise_ydernummer
from sorsync.lookup.query import Query, Rows, Steps, comma_text

COPENHAGEN = ZoneInfo("Europe/Copenhagen")
# The v1 kinds; SOR2 units are of these where their type says so, else of the last three.
KINDS = (
    "sygehus",
    "sygehusafdeling",
    "praksis",
    "yder",
    "apotek",
    "institutionsejer",
    "sundhedsinstitution",
    "organisationsenhed",
)
MAX_ANCESTORS = 32  # SOR trees are a handful of levels deep; this only stops a cycle in bad data


class Unit(NamedTuple):
    """One version of a SOR unit (one row of `sor.unit`). A NamedTuple rather than a
    dataclass: built straight from the row tuple, ≈10× faster for a 10 000-code batch."""

    sor_id: int
    kind: str
    name: str | None
    shak: str | None
    ydernummer: str | None
    ean: int | None
    parent_sor_id: int | None
    hospital_sor_id: int | None
    praksis_sor_id: int | None
    street: str | None
    postcode: str | None
    city: str | None
    phone: str | None
    email: str | None
    www: str | None
    specialty_code: str | None
    specialty_text: str | None
    valid_from: datetime | None
    valid_to: datetime | None
    pid: int
    modified_at: datetime
    # SOR2 (None / empty for units from the v1 views); sorsync/db/views.py builds them.
    datatype: str
    sor_type: str | None
    entity_type: str | None
    organisational_level_code: str | None
    organisational_level_name: str | None
    health_institution_name: str | None
    institution_owner_sor_id: int | None
    institution_owner_name: str | None
    institution_owner_type: str | None
    institution_owner_cvr: str | None
    specialities: list[dict[str, str]] | None
    addresses: dict[str, dict[str, Any]] | None
    replaced_by: list[int] | None
    nsp_valid_from: datetime | None
    nsp_valid_to: datetime | None

    def valid_at(self, at: datetime) -> bool:
        return (self.valid_from is None or self.valid_from <= at) and (
            self.valid_to is None or at < self.valid_to
        )


@dataclass(frozen=True, slots=True)
class UnitTree:
    """A unit on a date with its ancestors (nearest first) and its children's SOR ids."""

    unit: Unit
    ancestors: list[Unit]
    children: list[int]


@dataclass(frozen=True, slots=True)
class SearchPage:
    items: list[Unit]
    next_after: int | None  # pass as `after` to get the next page; None on the last page


COLUMNS = (
    "sor_id, kind, name, shak, ydernummer, ean, parent_sor_id, hospital_sor_id, "
    "praksis_sor_id, street, postcode, city, phone, email, www, specialty_code, "
    "specialty_text, valid_from, valid_to, pid, modified_at, datatype, sor_type, entity_type, "
    "organisational_level_code, organisational_level_name, health_institution_name, "
    "institution_owner_sor_id, institution_owner_name, institution_owner_type, "
    "institution_owner_cvr, specialities, addresses, replaced_by, nsp_valid_from, nsp_valid_to"
)
_U_COLUMNS = ", ".join(f"u.{c.strip()}" for c in COLUMNS.split(","))
_VALID = (
    "(u.valid_from IS NULL OR u.valid_from <= %(at)s) "
    "AND (u.valid_to IS NULL OR %(at)s < u.valid_to)"
)
_ORDER = "ORDER BY u.sor_id, u.valid_from NULLS FIRST, u.pid"


def day_start(day: date) -> datetime:
    """The instant a date D begins in Denmark: what `valid_from <= D` compares against."""
    return datetime.combine(day, time.min, tzinfo=COPENHAGEN)


def today() -> date:
    """Today in Denmark (the default `date` of every lookup)."""
    return datetime.now(COPENHAGEN).date()


def local_date(value: datetime | None) -> date | None:
    """A stored validity bound as the Danish calendar date it falls on."""
    return None if value is None else value.astimezone(COPENHAGEN).date()


# --- shaping: plain functions of the fetched rows (module level: no allocation per lookup) ----


def units_of(rows: Rows) -> list[Unit]:
    """Rows of the unit columns (COLUMNS) as Units."""
    make = Unit._make
    return [make(row) for row in rows]


def first_unit(rows: Rows) -> Unit | None:
    return Unit._make(rows[0]) if rows else None


def units_by_code(rows: Rows) -> dict[str, list[Unit]]:
    """Rows of (code, unit columns…) as code → its units, in row order."""
    found: dict[str, list[Unit]] = {}
    make = Unit._make
    for row in rows:
        found.setdefault(row[0], []).append(make(row[1:]))
    return found


def tree_of(rows: Rows) -> UnitTree | None:
    """TREE_WITH_CHILDREN's rows (the unit, then its ancestors, nearest first; the first row's
    last column the children's SOR ids) as a UnitTree, None if no row."""
    if not rows:
        return None
    # Two versions valid on one day would be bad data; show the first, keep the chain sane.
    seen: set[int] = set()
    path = []
    for row in rows:
        if row[0] not in seen:
            seen.add(row[0])
            path.append(Unit._make(row[:-1]))
    children: list[int] = rows[0][-1]
    return UnitTree(unit=path[0], ancestors=path[1:], children=children)


def first_value_true(rows: Rows) -> bool:
    return bool(rows[0][0])


# SHAK → SOR goes through sor.shak_map: SOR2's shaksormap where it holds rows, else the units'
# own SHAK codes (sorsync/db/views.py).
_MAP_VALID = _VALID.replace("u.", "m.")
# Each mapped SOR id is an index lookup in every branch of sor.unit (LATERAL).
_UNITS_OF_MAP = (
    f"CROSS JOIN LATERAL (SELECT * FROM sor.unit u WHERE u.sor_id = m.sor_id AND {_VALID}) u"
)
# Every unit carrying the code that day (a search: the UI's and FHIR's, not the API's answer).
BY_SHAK = (
    f"SELECT {_U_COLUMNS} FROM (SELECT DISTINCT m.sor_id FROM sor.shak_map m"
    f" WHERE m.shak = %(code)s AND {_MAP_VALID}) m {_UNITS_OF_MAP} {_ORDER}"
)


def by_shak(code: str, day: date) -> Query[list[Unit]]:
    """Every unit carrying SHAK `code` on `day` (SHAK → SOR is 1:N), ordered by SOR id; a
    child that inherits its parent's code is listed too (`resolved` leaves it out)."""
    return Query(BY_SHAK, {"code": code, "at": day_start(day)}, units_of)


# The answer for a code of a kind on a day, by the back-mapping rules (the SQL function
# sor.resolve_item, sorsync/db/views.py: the one implementation that sor.resolve, the API's
# single lookups and its batches share), as full rows of the versions it picked. The kind is a
# literal so that PostgreSQL, inlining the function, folds away the other kinds' branches and
# the prepared statement's generic plan stays a few index probes.
# OFFSET 0 keeps the subquery a LATERAL probe per answer (an index scan in each branch of
# sor.unit): pulled up into a join, the generic plan hash-joined whole tables.
_OF_ITEM = (
    "CROSS JOIN LATERAL (SELECT * FROM sor.unit u WHERE u.sor_id = r.sor_id AND u.pid = r.pid"
    " OFFSET 0) u"
)
RESOLVED = {
    kind: f"SELECT {_U_COLUMNS} FROM sor.resolve_item('{kind}', %(code)s, %(day)s) r {_OF_ITEM}"
    " ORDER BY u.sor_id"
    for kind in ("shak", "sor", "ean", "ydernummer")
}


def resolved(kind: str, code: str, day: date) -> Query[list[Unit]]:
    """The units that answer `code` of `kind` (shak, sor, ean, ydernummer; validated and
    normalised by the caller) on `day`: one when found, several when ambiguous, none when not
    found; a candidate whose parent is also one is left out (docs/back-mapping.md)."""
    return Query(RESOLVED[kind], {"code": code, "day": day}, units_of)


# The answer to many SHAK codes: sor.resolve_items for all of them at once (codes
# de-duplicated by the caller), item n being code n.
_RESOLVED_MANY = (
    "FROM unnest(%(codes)s::text[]) WITH ORDINALITY AS c(code, ord)"
    " JOIN sor.resolve_items(array_fill('shak'::text, ARRAY[cardinality(%(codes)s::text[])]),"
    " %(codes)s::text[], array_fill(%(day)s::date, ARRAY[cardinality(%(codes)s::text[])])) r"
    " ON r.ord = c.ord"
)
RESOLVE = f"SELECT c.code, {_U_COLUMNS} {_RESOLVED_MANY} {_OF_ITEM} ORDER BY c.code, u.sor_id"


def resolve_shak(codes: list[str], day: date) -> Steps[dict[str, list[Unit]]]:
    """Many SHAK codes in one round trip (none for no codes): code → the units that answer it
    on `day` (as `resolved`; codes without any are absent from the result). Callers validate
    and de-duplicate the codes."""
    if not codes:
        return {}
    found: dict[str, list[Unit]] = yield Query(RESOLVE, {"codes": codes, "day": day}, units_by_code)
    return found


# The same units as RESOLVE, already rendered as the API's unit JSON (api.schemas.unit_json)
# and grouped per code: for 10 000 codes PostgreSQL writes the JSON in a fraction of the time
# Python takes to build and serialise 10 000 dicts. A row constructor keeps the JSON compact;
# dates are the Danish calendar day the stored instant falls on (as `local_date`).
# The codes travel as one comma-separated text, which PostgreSQL splits while planning:
# psycopg's list dumper took ~10 % of a 10 000-code request.
# The SOR2 facts of api.schemas.unit_json, but not the addresses: their WGS84 coordinates are
# projected in Python (pyproj), so a batch answer carries the unit without them.
RESOLVE_JSON = f"""
SELECT c.code, json_agg(j ORDER BY u.sor_id)::text
  {_RESOLVED_MANY.replace("%(codes)s::text[]", "string_to_array(%(codes)s, ',')")}
 {_OF_ITEM}
 CROSS JOIN LATERAL (
    SELECT u.sor_id::text AS sor_id, u.kind, u.name, u.shak, u.ydernummer, u.ean::text AS ean,
           u.parent_sor_id::text AS parent_sor_id, u.hospital_sor_id::text AS hospital_sor_id,
           u.praksis_sor_id::text AS praksis_sor_id,
           (SELECT a FROM (SELECT u.street, u.postcode, u.city) a) AS address,
           u.phone, u.email, u.www, u.specialty_code, u.specialty_text,
           (u.valid_from AT TIME ZONE '{COPENHAGEN.key}')::date AS valid_from,
           (u.valid_to AT TIME ZONE '{COPENHAGEN.key}')::date AS valid_to,
           u.datatype, u.sor_type, u.entity_type,
           CASE WHEN u.organisational_level_code IS NOT NULL
                  OR u.organisational_level_name IS NOT NULL
                THEN json_build_object('code', u.organisational_level_code,
                                       'name', u.organisational_level_name) END
             AS organisational_level,
           CASE WHEN u.health_institution_name IS NOT NULL
                THEN json_build_object('sor_id', u.hospital_sor_id::text,
                                       'name', u.health_institution_name) END
             AS health_institution,
           CASE WHEN u.institution_owner_sor_id IS NOT NULL
                  OR u.institution_owner_name IS NOT NULL
                THEN json_build_object('sor_id', u.institution_owner_sor_id::text,
                                       'name', u.institution_owner_name,
                                       'type', u.institution_owner_type,
                                       'cvr', u.institution_owner_cvr) END
             AS institution_owner,
           u.specialities,
           (SELECT array_agg(r::text) FROM unnest(u.replaced_by) r) AS replaced_by
  ) j
 GROUP BY c.code
"""


JIT_OFF = "SELECT set_config('jit', 'off', true)"


def resolve_shak_json(codes: list[str], day: date) -> Steps[dict[str, str]]:
    """`resolve_shak`, with each code's units as a JSON array text (the API's unit shape)."""
    if not codes:
        return {}
    joined = comma_text(codes)
    # JIT off, as sor.resolve sets it: the plan's cost for many codes crosses JIT's threshold,
    # and compiling it took seconds (10 000 codes: 7 s instead of 0.5 s).
    yield Query(JIT_OFF, {}, len)
    found: dict[str, str] = yield Query(RESOLVE_JSON, {"codes": joined, "day": day}, dict)
    return found


# The unit valid on the day (the answer sor.resolve_item gives for the SOR id, as `resolved`)
# plus its ancestors, nearest first. `depth` guards against a cycle in the data; each step is an
# index scan on sor_nummer of the parent's replica table.
TREE = f"""
WITH RECURSIVE chain AS (
    SELECT 0 AS depth, {_U_COLUMNS} FROM sor.resolve_item('sor', %(code)s, %(day)s) r {_OF_ITEM}
    UNION ALL
    SELECT c.depth + 1, {_U_COLUMNS}
      FROM chain c JOIN sor.unit u ON u.sor_id = c.parent_sor_id
     WHERE {_VALID} AND c.depth < {MAX_ANCESTORS}
)
SELECT {COLUMNS} FROM chain ORDER BY depth, valid_from NULLS FIRST, pid
"""

# Children are found through sor.unit_link, whose branches each have an index on the parent
# column (the view's parent_sor_id is a COALESCE that no plain index serves).
CHILDREN = f"""
SELECT DISTINCT u.sor_id FROM sor.unit_link u
 WHERE u.parent_sor_id = %(sor_id)s AND {_VALID}
ORDER BY 1
"""


# TREE and CHILDREN in one round trip: the depth-0 row (the unit itself) also carries the
# children's SOR ids as an array (a sub-select in CASE runs only for the rows that need it).
TREE_WITH_CHILDREN = TREE.replace(
    f"SELECT {COLUMNS} FROM chain",
    f"SELECT {COLUMNS}, CASE WHEN depth = 0 THEN ARRAY({CHILDREN}) END FROM chain",
)
assert TREE_WITH_CHILDREN != TREE


def tree_params(sor_id: int, day: date) -> dict[str, Any]:
    return {"sor_id": sor_id, "code": str(sor_id), "day": day, "at": day_start(day)}


def unit_tree(sor_id: int, day: date) -> Query[UnitTree | None]:
    """The unit `sor_id` on `day` with ancestors up to its hospital/practice and the SOR ids
    of its children valid that day (one round trip); None if no version of it is valid that
    day."""
    return Query(TREE_WITH_CHILDREN, tree_params(sor_id, day), tree_of)


UNIT = f"SELECT {_U_COLUMNS} FROM sor.unit u WHERE u.sor_id = %(sor_id)s AND {_VALID} {_ORDER}"


def unit(sor_id: int, day: date) -> Query[Unit | None]:
    """The version of unit `sor_id` valid on `day`, or None."""
    return Query(UNIT, {"sor_id": sor_id, "at": day_start(day)}, first_unit)


HISTORY = (
    f"SELECT {_U_COLUMNS} FROM sor.unit u WHERE u.sor_id = %(sor_id)s "
    "ORDER BY u.valid_from NULLS FIRST, u.pid"
)


def history(sor_id: int) -> Query[list[Unit]]:
    """Every version of unit `sor_id`, oldest first (empty if the SOR id is unknown)."""
    return Query(HISTORY, {"sor_id": sor_id}, units_of)


BY_YDER = (
    f"SELECT {_U_COLUMNS} FROM sor.unit u "
    f"WHERE u.ydernummer = ANY(%(numbers)s) AND {_VALID} {_ORDER}"
)


def ydernummer_variants(number: str) -> list[str]:
    """The spellings a ydernummer may be stored under: without leading zeros (how NSP stores
    it) and zero-padded up to 9 digits (how SOR itself writes it). An equality list keeps the
    lookup a plain index scan on `nummer`."""
    bare = normalise_ydernummer(number)
    return [bare.rjust(width, "0") for width in range(len(bare), 10)]


def by_ydernummer(number: str, day: date) -> Query[list[Unit]]:
    """Units carrying ydernummer `number` on `day`, with or without leading zeros."""
    params = {"numbers": ydernummer_variants(number), "at": day_start(day)}
    return Query(BY_YDER, params, units_of)


BY_EAN = f"SELECT {_U_COLUMNS} FROM sor.unit u WHERE u.ean = %(gln)s AND {_VALID} {_ORDER}"


def by_ean(gln: int, day: date) -> Query[list[Unit]]:
    """Units with EAN/GLN location number `gln` on `day` (inherited EANs repeat on children)."""
    return Query(BY_EAN, {"gln": gln, "at": day_start(day)}, units_of)


def like_pattern(q: str) -> str:
    """`q` as a case-insensitive substring pattern, its own % and _ taken literally."""
    escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def search(
    *,
    day: date,
    q: str | None = None,
    kind: str | None = None,
    postcode: str | None = None,
    limit: int = 100,
    after: int | None = None,
) -> Query[SearchPage]:
    """Units valid on `day` matching every given filter, ordered by SOR id, one version per
    unit. Keyset pagination: pass the previous page's `next_after` as `after`."""
    where = [_VALID]
    params: dict[str, Any] = {"at": day_start(day), "limit": limit + 1}
    if q:
        # ILIKE on name → the trigram GIN index on each table's navn.
        where.append("u.name ILIKE %(pattern)s")
        params["pattern"] = like_pattern(q)
    if kind:
        where.append("u.kind = %(kind)s")
        params["kind"] = kind
    if postcode:
        where.append("u.postcode = %(postcode)s")
        params["postcode"] = postcode
    if after is not None:
        where.append("u.sor_id > %(after)s")
        params["after"] = after
    sql = (
        f"SELECT DISTINCT ON (u.sor_id) {_U_COLUMNS} FROM sor.unit u "
        f"WHERE {' AND '.join(where)} {_ORDER} LIMIT %(limit)s"
    )

    def page(rows: Rows) -> SearchPage:
        items = units_of(rows)
        if len(items) > limit:
            items = items[:limit]
            return SearchPage(items=items, next_after=items[-1].sor_id)
        return SearchPage(items=items, next_after=None)

    return Query(sql, params, page)


EXISTS = "SELECT EXISTS (SELECT 1 FROM sor.unit u WHERE u.sor_id = %(sor_id)s)"


def sor_id_known(sor_id: int) -> Query[bool]:
    """Whether any version of `sor_id` exists (to tell 'unknown' from 'not valid that day')."""
    return Query(EXISTS, {"sor_id": sor_id}, first_value_true)
