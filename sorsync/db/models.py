"""SQLAlchemy models of schema `krs`: one replica table per KRS datatype plus sync bookkeeping.

Replica tables are built from the datatype registry so that the ORM, the sync engine and
`alembic check` agree on one definition. Migrations still spell every column out: a migration
is a record of what was deployed and must not change when the registry does.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeEngine

from sorsync.datatypes import DATATYPES, SOR2_DATATYPES, Datatype, FieldType, lookup

KRS_SCHEMA = "krs"
SOR_SCHEMA = "sor"

# Deterministic constraint names, so autogenerate and hand-written migrations agree.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Base(DeclarativeBase):
    metadata = metadata


def _sql_type(kind: FieldType) -> TypeEngine[Any]:
    if kind is FieldType.TIMESTAMP:
        return DateTime(timezone=True)
    if kind is FieldType.BIGINT:
        return BigInteger()
    return Text()


def replica_table(dt: Datatype, *, name: str | None = None, meta: MetaData = metadata) -> Table:
    """The replica table of `dt` (or a same-shaped table under another name, e.g. a shadow)."""
    if dt.is_document:
        return Table(
            name or dt.table,
            meta,
            Column("pid", BigInteger, primary_key=True, autoincrement=False),
            Column("modified_at", DateTime(timezone=True), nullable=False),
            Column("token", Text, nullable=False),
            Column("record_namespace", Text),
            Column("record", JSONB, nullable=False),
            schema=KRS_SCHEMA,
        )
    return Table(
        name or dt.table,
        meta,
        Column("pid", BigInteger, primary_key=True, autoincrement=False),
        Column("modified_at", DateTime(timezone=True), nullable=False),
        Column("token", Text, nullable=False),
        *(Column(f.column, _sql_type(f.type)) for f in dt.fields),
        Column("extra", JSONB),
        schema=KRS_SCHEMA,
    )


REPLICA_TABLES: dict[str, Table] = {key: replica_table(dt) for key, dt in DATATYPES.items()}
# The SOR2 datatypes of the default mapping have their tables made by migration 0003; any other
# document datatype gets its table when it is first synced (sorsync.db.views.ensure_tables).
DOCUMENT_TABLES: dict[str, Table] = {key: replica_table(lookup(key)) for key in SOR2_DATATYPES}

# Columns the API looks units up by (SOR id, EAN, SHAK/ydernummer, parent links): migration
# 0002; postcode: migration 0004.
LOOKUP_COLUMNS = (
    "sor_nummer",
    "ean_lokationsnummer",
    "nummer",
    "overafdeling_sor_nummer",
    "underlagt_sygehus_sor_nummer",
    "praksis_sor_nummer",
    "postnummer",
)


def lookup_indexes(table: Table) -> list[Index]:
    """Add the lookup indexes of migration 0002 to `table` (named after it): a btree per lookup
    column it has and a trigram GIN index on `navn` for name search."""
    indexes = [
        Index(f"ix_{table.name}_{column}", table.c[column])
        for column in LOOKUP_COLUMNS
        if column in table.c
    ]
    if "navn" in table.c:
        indexes.append(
            Index(
                f"ix_{table.name}_navn_trgm",
                table.c.navn,
                postgresql_using="gin",
                postgresql_ops={"navn": "gin_trgm_ops"},
            )
        )
    return indexes


for _table in REPLICA_TABLES.values():
    lookup_indexes(_table)


class SyncState(Base):
    """Where the replica of one datatype stands: the token of the last committed page."""

    __tablename__ = "sync_state"
    __table_args__ = {"schema": KRS_SCHEMA}  # noqa: RUF012 - read once by SQLAlchemy

    register: Mapped[str] = mapped_column(Text, primary_key=True)
    register_version: Mapped[int] = mapped_column(Integer, primary_key=True, server_default="1")
    datatype: Mapped[str] = mapped_column(Text, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    token: Mapped[str] = mapped_column(Text, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    last_success_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str | None] = mapped_column(Text)  # where the replica's tokens come from
    record_namespace: Mapped[str | None] = mapped_column(Text)  # as last seen in the feed
    drift: Mapped[dict[str, object] | None] = mapped_column(JSONB)  # fields vs the mapping


class SyncRun(Base):
    """One sync run (delta or full), for status, metrics and audit."""

    __tablename__ = "sync_run"
    __table_args__ = {"schema": KRS_SCHEMA}  # noqa: RUF012 - read once by SQLAlchemy

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    kind: Mapped[str] = mapped_column(Text, nullable=False)  # "delta" | "full"
    started_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(Text, nullable=False)  # running | ok | failed
    datatypes: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False)
    pages: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    records: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    error: Mapped[str | None] = mapped_column(Text)
    report: Mapped[dict[str, object] | None] = mapped_column(JSONB)
    source: Mapped[str | None] = mapped_column(Text)


class MappingState(Base):
    """The mapping the `sor` views were last built from (sorsync.db.views)."""

    __tablename__ = "mapping_state"
    __table_args__ = {"schema": KRS_SCHEMA}  # noqa: RUF012 - read once by SQLAlchemy

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    fingerprint: Mapped[str] = mapped_column(Text, nullable=False)
    applied_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    definition: Mapped[dict[str, object]] = mapped_column(JSONB, nullable=False)
