"""Postcode lookups: a btree index on `postnummer` of each v1 table that has one

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 15:00:00

The web UI's search reads a 4-digit text as a postcode too (`sor.unit`'s `postcode` =, as does
/v1/units?postcode=); without these indexes each such search scanned every v1 table. SOR2's
postcode index is built from the mapping at run time (sorsync.db.views), not here.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("sor_sygehus_v1", "sor_sygehusafdeling_v1", "sor_yder_v1", "sor_apotek_v1")


def upgrade() -> None:
    for table in TABLES:
        op.create_index(f"ix_{table}_postnummer", table, ["postnummer"], schema="krs")


def downgrade() -> None:
    for table in TABLES:
        op.drop_index(f"ix_{table}_postnummer", table_name=table, schema="krs")
