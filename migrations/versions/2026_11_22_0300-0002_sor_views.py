"""sor schema: views for lookups and analysts (sor.unit, sor.unit_current, sor.shak_map) and the
indexes on the krs replica tables that make every API lookup an index lookup

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 03:00:00

The views read the krs replica tables directly, so they always show the replica as last
committed. Views run with their owner's rights: a role granted SELECT on schema sor (see
`sorsync db grant-readonly`) reads them without any right on schema krs.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, column): plain btree indexes. Names match sorsync.db.models.lookup_indexes().
BTREE_INDEXES = (
    ("sor_sygehus_v1", "sor_nummer"),
    ("sor_sygehus_v1", "ean_lokationsnummer"),
    ("sor_sygehus_v1", "nummer"),
    ("sor_sygehusafdeling_v1", "sor_nummer"),
    ("sor_sygehusafdeling_v1", "ean_lokationsnummer"),
    ("sor_sygehusafdeling_v1", "nummer"),
    ("sor_sygehusafdeling_v1", "overafdeling_sor_nummer"),
    ("sor_sygehusafdeling_v1", "underlagt_sygehus_sor_nummer"),
    ("sor_praksis_v1", "sor_nummer"),
    ("sor_praksis_v1", "ean_lokationsnummer"),
    ("sor_yder_v1", "sor_nummer"),
    ("sor_yder_v1", "ean_lokationsnummer"),
    ("sor_yder_v1", "nummer"),
    ("sor_yder_v1", "praksis_sor_nummer"),
    ("sor_apotek_v1", "sor_nummer"),
    ("sor_apotek_v1", "ean_lokationsnummer"),
)
TRIGRAM_TABLES = (
    "sor_sygehus_v1",
    "sor_sygehusafdeling_v1",
    "sor_praksis_v1",
    "sor_yder_v1",
    "sor_apotek_v1",
)

# One SELECT per replica table, all with the same column list and types so that PostgreSQL
# flattens the UNION ALL and pushes predicates (sor_id = …, shak = …) into each branch; branches
# whose column is a NULL constant are pruned at plan time.
UNIT_VIEW = """
CREATE VIEW sor.unit AS
SELECT s.sor_nummer AS sor_id, 'sygehus'::text AS kind, s.navn AS name,
       s.nummer AS shak, NULL::text AS ydernummer, s.ean_lokationsnummer AS ean,
       NULL::bigint AS parent_sor_id, s.sor_nummer AS hospital_sor_id,
       NULL::bigint AS praksis_sor_id,
       s.vejnavn AS street, s.postnummer AS postcode, s.bynavn AS city, s.telefon AS phone,
       s.email, s.www, NULL::text AS specialty_code, NULL::text AS specialty_text,
       s.valid_from, s.valid_to, s.pid, s.modified_at
  FROM krs.sor_sygehus_v1 s
UNION ALL
SELECT a.sor_nummer, 'sygehusafdeling'::text, a.navn,
       a.nummer, NULL::text, a.ean_lokationsnummer,
       COALESCE(a.overafdeling_sor_nummer, a.sygehus_sor_nummer, a.underlagt_sygehus_sor_nummer),
       COALESCE(a.underlagt_sygehus_sor_nummer, a.sygehus_sor_nummer),
       NULL::bigint,
       a.vejnavn, a.postnummer, a.bynavn, a.telefon,
       a.email, a.www, a.hoved_speciale_kode, a.hoved_speciale_tekst,
       a.valid_from, a.valid_to, a.pid, a.modified_at
  FROM krs.sor_sygehusafdeling_v1 a
UNION ALL
SELECT p.sor_nummer, 'praksis'::text, p.navn,
       NULL::text, NULL::text, p.ean_lokationsnummer,
       NULL::bigint, NULL::bigint, p.sor_nummer,
       NULL::text, NULL::text, NULL::text, NULL::text,
       NULL::text, NULL::text, NULL::text, NULL::text,
       p.valid_from, p.valid_to, p.pid, p.modified_at
  FROM krs.sor_praksis_v1 p
UNION ALL
SELECT y.sor_nummer, 'yder'::text, y.navn,
       NULL::text, y.nummer, y.ean_lokationsnummer,
       y.praksis_sor_nummer, NULL::bigint, y.praksis_sor_nummer,
       y.vejnavn, y.postnummer, y.bynavn, y.telefon,
       y.email, y.www, y.hoved_speciale_kode, y.hoved_speciale_tekst,
       y.valid_from, y.valid_to, y.pid, y.modified_at
  FROM krs.sor_yder_v1 y
UNION ALL
SELECT ap.sor_nummer, 'apotek'::text, ap.navn,
       NULL::text, NULL::text, ap.ean_lokationsnummer,
       NULL::bigint, NULL::bigint, NULL::bigint,
       ap.vejnavn, ap.postnummer, ap.bynavn, ap.telefon,
       ap.email, ap.www, NULL::text, NULL::text,
       ap.valid_from, ap.valid_to, ap.pid, ap.modified_at
  FROM krs.sor_apotek_v1 ap
"""

UNIT_CURRENT_VIEW = """
CREATE VIEW sor.unit_current AS
SELECT * FROM sor.unit
 WHERE (valid_from IS NULL OR valid_from <= now())
   AND (valid_to IS NULL OR now() < valid_to)
"""

SHAK_MAP_VIEW = """
CREATE VIEW sor.shak_map AS
SELECT shak, sor_id, kind, valid_from, valid_to
  FROM sor.unit
 WHERE shak IS NOT NULL
"""

VIEW_COMMENTS = {
    "unit": (
        "Every version of every SOR unit replicated from NSP (hospitals, hospital departments "
        "and sections, practices, yder units, pharmacies), one row per version. A version is "
        "valid on date D when valid_from <= D and (valid_to IS NULL or D < valid_to). "
        "Values are as NSP delivers them (NSP already fills in inherited addresses and EANs)."
    ),
    "unit_current": (
        "The versions of sor.unit valid right now (valid_from <= now() < valid_to, "
        "valid_to NULL = open). Same columns as sor.unit."
    ),
    "shak_map": (
        "SHAK code to SOR id, one row per version of a unit that carries a SHAK code. "
        "A SHAK code can map to several SOR units on the same date; filter on validity."
    ),
}

UNIT_COLUMN_COMMENTS = {
    "sor_id": "SOR id (SOR-kode) of the unit: running number + namespace 1000016 + partition "
    "00 + Verhoeff check digit. Several rows (versions) may share one SOR id.",
    "kind": "Which replica the row comes from: sygehus (hospital), sygehusafdeling (hospital "
    "department or section), praksis (practice), yder (provider unit of a practice, carries "
    "the ydernummer), apotek (pharmacy).",
    "name": "Name of the unit (SOR EntityName).",
    "shak": "SHAK code (SghAfd-kode) of a hospital (4 characters) or department/section (6-7), "
    "NULL for other kinds. The same code may be on several units at once.",
    "ydernummer": "Ydernummer (provider number) of a yder unit, as NSP stores it: without "
    "leading zeros. NULL for other kinds. Not unique.",
    "ean": "EAN/GLN location number (13 digits, GS1 check digit), NULL if the unit has none.",
    "parent_sor_id": "SOR id of the parent unit: for a department its superior department, or "
    "the hospital for a top-level department; for a yder its practice; NULL for hospitals, "
    "practices and pharmacies.",
    "hospital_sor_id": "SOR id of the hospital the unit belongs to (a hospital: itself); NULL "
    "outside hospitals.",
    "praksis_sor_id": "SOR id of the practice the unit belongs to (a practice: itself; a yder: "
    "its practice); NULL otherwise.",
    "street": "Street name and building number.",
    "postcode": "Postcode.",
    "city": "Post town.",
    "phone": "Telephone number.",
    "email": "E-mail address.",
    "www": "Website.",
    "specialty_code": "Main clinical specialty code (departments and yder units), else NULL.",
    "specialty_text": "Main clinical specialty in words (Danish), else NULL.",
    "valid_from": "Start of this version's validity (inclusive; local midnight).",
    "valid_to": "End of this version's validity (exclusive: the first moment it is no longer "
    "valid); NULL = open-ended.",
    "pid": "NSP's row id of this version inside its replica table (kind + pid is unique).",
    "modified_at": "When NSP last changed this version (atom:updated of the record).",
}

SHAK_MAP_COLUMN_COMMENTS = {
    "shak": "SHAK code (SghAfd-kode).",
    "sor_id": "SOR id of a unit carrying the code in this version.",
    "kind": "sygehus or sygehusafdeling.",
    "valid_from": UNIT_COLUMN_COMMENTS["valid_from"],
    "valid_to": UNIT_COLUMN_COMMENTS["valid_to"],
}


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for table, column in BTREE_INDEXES:
        op.create_index(f"ix_{table}_{column}", table, [column], schema="krs")
    for table in TRIGRAM_TABLES:
        op.create_index(
            f"ix_{table}_navn_trgm",
            table,
            ["navn"],
            schema="krs",
            postgresql_using="gin",
            postgresql_ops={"navn": "gin_trgm_ops"},
        )
    op.execute("CREATE SCHEMA IF NOT EXISTS sor")
    create_views()


def create_views() -> None:
    """The schema's comment and the three views (also what 0003's downgrade restores)."""
    op.execute(
        "COMMENT ON SCHEMA sor IS "
        + _literal(
            "Read-only views over the SOR replica in schema krs, for lookups and analysts. "
            "Validity is half-open: valid on D when valid_from <= D < valid_to (NULL = open)."
        )
    )
    op.execute(UNIT_VIEW)
    op.execute(UNIT_CURRENT_VIEW)
    op.execute(SHAK_MAP_VIEW)
    for view, comment in VIEW_COMMENTS.items():
        op.execute(f"COMMENT ON VIEW sor.{view} IS {_literal(comment)}")
    for view in ("unit", "unit_current"):
        for column, comment in UNIT_COLUMN_COMMENTS.items():
            op.execute(f"COMMENT ON COLUMN sor.{view}.{column} IS {_literal(comment)}")
    for column, comment in SHAK_MAP_COLUMN_COMMENTS.items():
        op.execute(f"COMMENT ON COLUMN sor.shak_map.{column} IS {_literal(comment)}")


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS sor.shak_map")
    op.execute("DROP VIEW IF EXISTS sor.unit_current")
    op.execute("DROP VIEW IF EXISTS sor.unit")
    op.execute("DROP SCHEMA IF EXISTS sor")
    for table in TRIGRAM_TABLES:
        op.drop_index(f"ix_{table}_navn_trgm", table_name=table, schema="krs")
    for table, column in BTREE_INDEXES:
        op.drop_index(f"ix_{table}_{column}", table_name=table, schema="krs")
    # RESTRICT (the default): left in place if anything else has come to depend on it.
    op.execute("DROP EXTENSION IF EXISTS pg_trgm")
