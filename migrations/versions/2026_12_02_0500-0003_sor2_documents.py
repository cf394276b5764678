"""SOR2: datatypes keyed by register version, replica tables that keep whole records, the
mapping's SQL readers, and where each replica comes from

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 05:00:00

* `krs.sync_state` is keyed by (register, register_version, datatype, version), so the v1 and
  v2 views of one register keep their own tokens; it also records the replica's source, the
  record namespace seen and the last field comparison with the mapping (`drift`).
* `krs.sor_v2_{sorentity,shaksormap,sorreplacedentity}_v1` keep each record whole in `record`
  (jsonb). The typed `sor` views over them are built from the mapping at run time
  (sorsync.db.views), not here: a mapping change must not need a migration.
* `sor.as_bigint`, `as_numeric`, `as_date`, `as_timestamptz` read stored text into typed values
  and answer NULL for anything they cannot read, so no stored value can make a view fail.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DOCUMENT_TABLES = ("sor_v2_sorentity_v1", "sor_v2_shaksormap_v1", "sor_v2_sorreplacedentity_v1")

# An ISO date, optionally followed by a time and an offset; every field range-checked so that the
# casts below cannot fail (the day is checked against the month's length separately).
_DATE = r"[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
_TIME = r"([T ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,9})?)?)"
_OFFSET = r"(Z|[+-]([01][0-9]|1[0-4])(:?[0-5][0-9])?)"

FUNCTIONS = (
    # bigint: up to 18 digits, so it can never overflow
    r"""
CREATE FUNCTION sor.as_bigint(v text) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
SELECT CASE WHEN v ~ '^\s*-?[0-9]{1,18}\s*$' THEN btrim(v)::bigint END
$$""",
    r"""
CREATE FUNCTION sor.as_numeric(v text) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
SELECT CASE WHEN v ~ '^\s*-?[0-9]{1,15}([.,][0-9]{1,12})?\s*$'
            THEN replace(btrim(v), ',', '.')::numeric END
$$""",
    # true when v starts with a real calendar date of years 1000-9999
    rf"""
CREATE FUNCTION sor.starts_with_date(v text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
SELECT v ~ '^{_DATE}'
   AND substr(v, 1, 1) <> '0'
   AND substr(v, 9, 2)::int <= extract(day FROM
         make_date(substr(v, 1, 4)::int, substr(v, 6, 2)::int, 1)
         + interval '1 month' - interval '1 day')
$$""",
    # a date; a date-time with an offset counts on its Danish calendar day. Capped at
    # 9999-12-30 so that no value is beyond what Python's date can hold a day later.
    rf"""
CREATE FUNCTION sor.as_date(v text) RETURNS date
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
SELECT CASE
  WHEN v IS NULL THEN NULL  -- before LEAST below, which would turn a NULL into its bound
  WHEN btrim(v) !~ '^{_DATE}({_TIME}{_OFFSET}?)?$' OR NOT sor.starts_with_date(btrim(v))
    THEN NULL
  WHEN btrim(v) ~ '{_OFFSET}$' AND length(btrim(v)) > 10
    THEN LEAST((btrim(v)::timestamptz AT TIME ZONE 'Europe/Copenhagen')::date,
               DATE '9999-12-30')
  ELSE LEAST(substr(btrim(v), 1, 10)::date, DATE '9999-12-30')
END
$$""",
    # an instant; a date alone is its Danish midnight, a time without an offset Danish time.
    # Capped like as_date.
    rf"""
CREATE FUNCTION sor.as_timestamptz(v text) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
SELECT CASE
  WHEN v IS NULL THEN NULL  -- before LEAST below, which would turn a NULL into its bound
  WHEN btrim(v) !~ '^{_DATE}({_TIME}{_OFFSET}?)?$' OR NOT sor.starts_with_date(btrim(v))
    THEN NULL
  WHEN length(btrim(v)) = 10
    THEN LEAST(substr(btrim(v), 1, 10)::timestamp AT TIME ZONE 'Europe/Copenhagen',
               TIMESTAMPTZ '9999-12-30 00:00:00+00')
  WHEN btrim(v) ~ '{_OFFSET}$'
    THEN LEAST(btrim(v)::timestamptz, TIMESTAMPTZ '9999-12-30 00:00:00+00')
  ELSE LEAST(btrim(v)::timestamp AT TIME ZONE 'Europe/Copenhagen',
             TIMESTAMPTZ '9999-12-30 00:00:00+00')
END
$$""",
    # the instant a Danish calendar day begins (how sor.unit holds validity)
    r"""
CREATE FUNCTION sor.day_start(d date) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
SELECT d::timestamp AT TIME ZONE 'Europe/Copenhagen'
$$""",
)


def upgrade() -> None:
    op.add_column(
        "sync_state",
        sa.Column("register_version", sa.Integer(), server_default="1", nullable=False),
        schema="krs",
    )
    op.drop_constraint("pk_sync_state", "sync_state", schema="krs", type_="primary")
    op.create_primary_key(
        "pk_sync_state",
        "sync_state",
        ["register", "register_version", "datatype", "version"],
        schema="krs",
    )
    op.add_column("sync_state", sa.Column("source", sa.Text(), nullable=True), schema="krs")
    op.add_column(
        "sync_state", sa.Column("record_namespace", sa.Text(), nullable=True), schema="krs"
    )
    op.add_column(
        "sync_state",
        sa.Column("drift", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        schema="krs",
    )
    op.add_column("sync_run", sa.Column("source", sa.Text(), nullable=True), schema="krs")
    for table in DOCUMENT_TABLES:
        op.create_table(
            table,
            sa.Column("pid", sa.BigInteger(), autoincrement=False, nullable=False),
            sa.Column("modified_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("token", sa.Text(), nullable=False),
            sa.Column("record_namespace", sa.Text(), nullable=True),
            sa.Column("record", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
            sa.PrimaryKeyConstraint("pid", name=op.f(f"pk_{table}")),
            schema="krs",
        )
    op.create_table(
        "mapping_state",
        sa.Column("id", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("fingerprint", sa.Text(), nullable=False),
        sa.Column(
            "applied_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("definition", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mapping_state")),
        schema="krs",
    )
    for statement in FUNCTIONS:
        op.execute(statement)


def downgrade() -> None:
    # The views built from the mapping read the tables and functions dropped here; the 0002
    # views are put back as 0002 made them.
    import importlib.util
    from pathlib import Path

    path = Path(__file__).with_name("2026_11_22_0300-0002_sor_views.py")
    spec = importlib.util.spec_from_file_location("sorsync_migration_0002", path)
    assert spec is not None and spec.loader is not None
    v2 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(v2)
    op.execute("DROP SCHEMA sor CASCADE")  # the views built from the mapping and the functions
    op.execute("CREATE SCHEMA sor")
    v2.create_views()
    op.drop_table("mapping_state", schema="krs")
    for table in DOCUMENT_TABLES:
        op.drop_table(table, schema="krs")
    op.drop_column("sync_run", "source", schema="krs")
    for column in ("drift", "record_namespace", "source"):
        op.drop_column("sync_state", column, schema="krs")
    op.execute("DELETE FROM krs.sync_state WHERE register_version <> 1")
    op.drop_constraint("pk_sync_state", "sync_state", schema="krs", type_="primary")
    op.create_primary_key(
        "pk_sync_state", "sync_state", ["register", "datatype", "version"], schema="krs"
    )
    op.drop_column("sync_state", "register_version", schema="krs")
