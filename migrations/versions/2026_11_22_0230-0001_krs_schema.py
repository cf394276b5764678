"""krs schema: replica tables of the five SOR v1 datatypes, sync_state and sync_run

Revision ID: 0001
Revises:
Create Date: 2026-11-22 02:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REPLICA_TABLES = (
    "sor_sygehus_v1",
    "sor_sygehusafdeling_v1",
    "sor_praksis_v1",
    "sor_yder_v1",
    "sor_apotek_v1",
)


def upgrade() -> None:
    op.execute("CREATE SCHEMA IF NOT EXISTS krs")
    op.create_table(
        "sor_sygehus_v1",
        sa.Column("pid", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("modified_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("token", sa.Text(), nullable=False),
        sa.Column("sor_nummer", sa.BigInteger(), nullable=True),
        sa.Column("ean_lokationsnummer", sa.BigInteger(), nullable=True),
        sa.Column("nummer", sa.Text(), nullable=True),
        sa.Column("navn", sa.Text(), nullable=True),
        sa.Column("telefon", sa.Text(), nullable=True),
        sa.Column("vejnavn", sa.Text(), nullable=True),
        sa.Column("postnummer", sa.Text(), nullable=True),
        sa.Column("bynavn", sa.Text(), nullable=True),
        sa.Column("email", sa.Text(), nullable=True),
        sa.Column("www", sa.Text(), nullable=True),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=True),
        sa.Column("valid_to", sa.DateTime(timezone=True), nullable=True),
        sa.Column("extra", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.PrimaryKeyConstraint("pid", name=op.f("pk_sor_sygehus_v1")),
        schema="krs",
    )
    op.create_table(
        "sor_sygehusafdeling_v1",
        sa.Column("pid", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("modified_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("token", sa.Text(), nullable=False),
        sa.Column("sor_nummer", sa.BigInteger(), nullable=True),
        sa.Column("sygehus_sor_nummer", sa.BigInteger(), nullable=True),
        sa.Column("overafdeling_sor_nummer", sa.BigInteger(), nullable=True),
        sa.Column("underlagt_sygehus_sor_nummer", sa.BigInteger(), nullable=True),
        sa.Column("ean_lokationsnummer", sa.BigInteger(), nullable=True),
        sa.Column("afdeling_type_kode", sa.BigInteger(), nullable=True),
        sa.Column("afdeling_type_tekst", sa.Text(), nullable=True),
        sa.Column("hoved_speciale_kode", sa.Text(), nullable=True),
        sa.Column("hoved_speciale_tekst", sa.Text(), nullable=True),
        sa.Column("nummer", sa.Text(), nullable=True),
        sa.Column("navn", sa.Text(), nullable=True),
        sa.Column("telefon", sa.Text(), nullable=True),
        sa.Column("vejnavn", sa.Text(), nullable=True),
        sa.Column("postnummer", sa.Text(), nullable=True),
        sa.Column("bynavn", sa.Text(), nullable=True),
        sa.Column("email", sa.Text(), nullable=True),
        sa.Column("www", sa.Text(), nullable=True),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=True),
        sa.Column("valid_to", sa.DateTime(timezone=True), nullable=True),
        sa.Column("extra", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.PrimaryKeyConstraint("pid", name=op.f("pk_sor_sygehusafdeling_v1")),
        schema="krs",
    )
    op.create_table(
        "sor_praksis_v1",
        sa.Column("pid", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("modified_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("token", sa.Text(), nullable=False),
        sa.Column("sor_nummer", sa.BigInteger(), nullable=True),
        sa.Column("ean_lokationsnummer", sa.BigInteger(), nullable=True),
        sa.Column("region_code", sa.BigInteger(), nullable=True),
        sa.Column("navn", sa.Text(), nullable=True),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=True),
        sa.Column("valid_to", sa.DateTime(timezone=True), nullable=True),
        sa.Column("extra", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.PrimaryKeyConstraint("pid", name=op.f("pk_sor_praksis_v1")),
        schema="krs",
    )
    op.create_table(
        "sor_yder_v1",
        sa.Column("pid", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("modified_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("token", sa.Text(), nullable=False),
        sa.Column("sor_nummer", sa.BigInteger(), nullable=True),
        sa.Column("praksis_sor_nummer", sa.BigInteger(), nullable=True),
        sa.Column("ean_lokationsnummer", sa.BigInteger(), nullable=True),
        sa.Column("nummer", sa.Text(), nullable=True),
        sa.Column("navn", sa.Text(), nullable=True),
        sa.Column("telefon", sa.Text(), nullable=True),
        sa.Column("vejnavn", sa.Text(), nullable=True),
        sa.Column("postnummer", sa.Text(), nullable=True),
        sa.Column("bynavn", sa.Text(), nullable=True),
        sa.Column("email", sa.Text(), nullable=True),
        sa.Column("www", sa.Text(), nullable=True),
        sa.Column("hoved_speciale_kode", sa.Text(), nullable=True),
        sa.Column("hoved_speciale_tekst", sa.Text(), nullable=True),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=True),
        sa.Column("valid_to", sa.DateTime(timezone=True), nullable=True),
        sa.Column("extra", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.PrimaryKeyConstraint("pid", name=op.f("pk_sor_yder_v1")),
        schema="krs",
    )
    op.create_table(
        "sor_apotek_v1",
        sa.Column("pid", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("modified_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("token", sa.Text(), nullable=False),
        sa.Column("sor_nummer", sa.BigInteger(), nullable=True),
        sa.Column("apotek_nummer", sa.BigInteger(), nullable=True),
        sa.Column("filial_nummer", sa.BigInteger(), nullable=True),
        sa.Column("ean_lokationsnummer", sa.BigInteger(), nullable=True),
        sa.Column("cvr", sa.BigInteger(), nullable=True),
        sa.Column("pcvr", sa.BigInteger(), nullable=True),
        sa.Column("navn", sa.Text(), nullable=True),
        sa.Column("telefon", sa.Text(), nullable=True),
        sa.Column("vejnavn", sa.Text(), nullable=True),
        sa.Column("postnummer", sa.Text(), nullable=True),
        sa.Column("bynavn", sa.Text(), nullable=True),
        sa.Column("email", sa.Text(), nullable=True),
        sa.Column("www", sa.Text(), nullable=True),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=True),
        sa.Column("valid_to", sa.DateTime(timezone=True), nullable=True),
        sa.Column("extra", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.PrimaryKeyConstraint("pid", name=op.f("pk_sor_apotek_v1")),
        schema="krs",
    )
    op.create_table(
        "sync_state",
        sa.Column("register", sa.Text(), nullable=False),
        sa.Column("datatype", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("token", sa.Text(), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("register", "datatype", "version", name=op.f("pk_sync_state")),
        schema="krs",
    )
    op.create_table(
        "sync_run",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column(
            "started_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("datatypes", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("pages", sa.Integer(), server_default="0", nullable=False),
        sa.Column("records", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("report", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_run")),
        schema="krs",
    )


def downgrade() -> None:
    op.drop_table("sync_run", schema="krs")
    op.drop_table("sync_state", schema="krs")
    for table in REPLICA_TABLES:
        op.drop_table(table, schema="krs")
    op.execute("DROP SCHEMA IF EXISTS krs CASCADE")
