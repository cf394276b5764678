"""Alembic environment: online migrations only, one transaction per migration, under an
advisory lock so that concurrent deploys (several API or scheduler processes starting at once)
cannot race each other."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, text

from sorsync.db.engine import make_engine
from sorsync.db.locks import lock_key
from sorsync.db.models import KRS_SCHEMA, SOR_SCHEMA, metadata

config = context.config
MIGRATION_LOCK = lock_key("migrations")


def _include_name(name: str | None, type_: str, _parents: object) -> bool:
    if type_ == "schema":
        return name in {KRS_SCHEMA, SOR_SCHEMA}
    # Built from the mapping at run time, not by migrations (sorsync/db/views.py).
    return not (type_ == "index" and name is not None and name.startswith("ixm_"))


def _include_object(
    _obj: object, _name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    # A replica table of a datatype the registry does not know is made when it is first synced
    # (sorsync/db/views.py), so it is in the database but not in the models.
    return not (type_ == "table" and reflected and compare_to is None)


def _run(connection: Connection) -> None:
    connection.execute(text("SET lock_timeout = '60s'"))
    connection.execute(text("SET statement_timeout = '15min'"))
    connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK})
    connection.commit()
    try:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            include_schemas=True,
            include_name=_include_name,
            include_object=_include_object,
            compare_type=True,
            compare_server_default=True,
            transaction_per_migration=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    finally:
        connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK})
        connection.commit()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.attributes.get("url")
    if url is None:
        from sorsync.db.connect import database_url

        url = database_url()
    engine = make_engine(url, pool=False, application_name="sorsync-migrate")
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")
run_migrations_online()
