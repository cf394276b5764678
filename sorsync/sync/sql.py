"""SQL of the sync engine, composed with psycopg's `sql` module.

Identifiers come from the datatype registry and are always quoted; values are always bound.
A replica table is pid, modified_at, token, then one column per field and `extra` (a typed
datatype), or `record_namespace` and `record` (a document datatype).
"""

from __future__ import annotations

from psycopg import sql

from sorsync.datatypes import Datatype, FieldType
from sorsync.db.models import KRS_SCHEMA

# psycopg type names for binary COPY (binary COPY needs the exact column types).
_COPY_TYPE = {FieldType.BIGINT: "int8", FieldType.TEXT: "text", FieldType.TIMESTAMP: "timestamptz"}


DOCUMENT_COLUMNS = ("pid", "modified_at", "token", "record_namespace", "record")


def columns(dt: Datatype) -> tuple[str, ...]:
    """All replica columns of `dt`, in table order."""
    if dt.is_document:
        return DOCUMENT_COLUMNS
    return ("pid", "modified_at", "token", *dt.columns, "extra")


def copy_types(dt: Datatype) -> list[str]:
    if dt.is_document:
        return ["int8", "timestamptz", "text", "text", "jsonb"]
    return ["int8", "timestamptz", "text", *(_COPY_TYPE[f.type] for f in dt.fields), "jsonb"]


def live(dt: Datatype) -> sql.Identifier:
    return sql.Identifier(KRS_SCHEMA, dt.table)


def stage(dt: Datatype) -> sql.Identifier:
    # A temporary table: private to the run's connection, never WAL-logged.
    return sql.Identifier("pg_temp", f"stage__{dt.table}")


def shadow(dt: Datatype) -> sql.Identifier:
    # Temporary as well: a crash or a killed process leaves nothing behind, and alembic's drift
    # check never sees it in schema krs.
    return sql.Identifier("pg_temp", f"shadow__{dt.table}")


def _cols(names: tuple[str, ...], prefix: str | None = None) -> sql.Composed:
    if prefix is None:
        return sql.SQL(", ").join(sql.Identifier(c) for c in names)
    return sql.SQL(", ").join(sql.Identifier(prefix, c) for c in names)


def create_stage(dt: Datatype) -> list[sql.Composed]:
    """(Re)create the per-page staging table; ON COMMIT DELETE ROWS empties it after each page."""
    return [
        sql.SQL("DROP TABLE IF EXISTS {}").format(stage(dt)),
        sql.SQL("CREATE TEMP TABLE {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS").format(
            sql.Identifier(f"stage__{dt.table}"), live(dt)
        ),
    ]


def create_shadow(dt: Datatype) -> list[sql.Composed]:
    """A shadow of the replica with only its primary key: the shadow is compared with and merged
    into the live table, never swapped in, so secondary indexes would only slow the load."""
    return [
        sql.SQL("DROP TABLE IF EXISTS {}").format(shadow(dt)),
        sql.SQL("CREATE TEMP TABLE {} (LIKE {} INCLUDING DEFAULTS, PRIMARY KEY (pid))").format(
            sql.Identifier(f"shadow__{dt.table}"), live(dt)
        ),
    ]


def truncate(table: sql.Identifier) -> sql.Composed:
    return sql.SQL("TRUNCATE {}").format(table)


def exists_any(dt: Datatype) -> sql.Composed:
    return sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(live(dt))


def drop(table: sql.Identifier) -> sql.Composed:
    return sql.SQL("DROP TABLE IF EXISTS {}").format(table)


def copy_into(dt: Datatype, table: sql.Identifier) -> sql.Composed:
    return sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(table, _cols(columns(dt)))


def merge(
    dt: Datatype, *, source: sql.Identifier, target: sql.Identifier, dedupe: bool
) -> sql.Composed:
    """Upsert `source` into `target` by PID; returns one row (inserted, updated).

    A row whose every column equals the delivery is left alone (no new tuple, no bloat). With
    `dedupe`, the latest delivery of a PID in `source` wins (tokens of one PID have the same
    length, so text order is feed order).
    """
    cols = columns(dt)
    data = cols[1:]
    pick = sql.SQL("DISTINCT ON (pid) ") if dedupe else sql.SQL("")
    order = sql.SQL(" ORDER BY pid, token DESC") if dedupe else sql.SQL("")
    return sql.SQL(
        "WITH m AS ("
        "INSERT INTO {target} AS t ({cols}) SELECT {pick}{cols} FROM {source}{order} "
        "ON CONFLICT (pid) DO UPDATE SET {assign} "
        "WHERE ({old}) IS DISTINCT FROM ({new}) "
        # xmax = 0 only on a freshly inserted tuple: tells inserts from updates.
        "RETURNING (t.xmax = 0) AS inserted) "
        "SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM m"
    ).format(
        target=target,
        source=source,
        cols=_cols(cols),
        pick=pick,
        order=order,
        assign=sql.SQL(", ").join(
            sql.SQL("{} = {}").format(sql.Identifier(c), sql.Identifier("excluded", c))
            for c in data
        ),
        old=_cols(data, "t"),
        new=_cols(data, "excluded"),
    )


def delete_missing(dt: Datatype) -> sql.Composed:
    """Delete live rows the shadow does not have (full sync)."""
    return sql.SQL(
        "DELETE FROM {live} l WHERE NOT EXISTS (SELECT 1 FROM {shadow} s WHERE s.pid = l.pid)"
    ).format(live=live(dt), shadow=shadow(dt))


def reconcile_counts(dt: Datatype) -> sql.Composed:
    """One row: old_rows, new_rows, only_old, only_new, changed, then one count per column of
    the rows (present in both) where that column differs."""
    data = columns(dt)[1:]
    both = sql.SQL("l.pid IS NOT NULL AND s.pid IS NOT NULL")
    per_column = sql.SQL(", ").join(
        sql.SQL("count(*) FILTER (WHERE {both} AND {l} IS DISTINCT FROM {s})").format(
            both=both, l=sql.Identifier("l", c), s=sql.Identifier("s", c)
        )
        for c in data
    )
    return sql.SQL(
        "SELECT count(l.pid), count(s.pid), "
        "count(*) FILTER (WHERE s.pid IS NULL), count(*) FILTER (WHERE l.pid IS NULL), "
        "count(*) FILTER (WHERE {both} AND ({lc}) IS DISTINCT FROM ({sc})), {per_column} "
        "FROM {live} l FULL JOIN {shadow} s ON s.pid = l.pid"
    ).format(
        both=both,
        lc=_cols(data, "l"),
        sc=_cols(data, "s"),
        per_column=per_column,
        live=live(dt),
        shadow=shadow(dt),
    )


def reconcile_examples(dt: Datatype, which: str) -> sql.Composed:
    """Up to %(limit)s PIDs (lowest first) that are only_old | only_new | changed."""
    data = columns(dt)[1:]
    if which == "only_old":
        query = (
            "SELECT l.pid FROM {live} l WHERE NOT EXISTS "
            "(SELECT 1 FROM {shadow} s WHERE s.pid = l.pid) ORDER BY l.pid LIMIT %(limit)s"
        )
    elif which == "only_new":
        query = (
            "SELECT s.pid FROM {shadow} s WHERE NOT EXISTS "
            "(SELECT 1 FROM {live} l WHERE l.pid = s.pid) ORDER BY s.pid LIMIT %(limit)s"
        )
    elif which == "changed":
        query = (
            "SELECT l.pid FROM {live} l JOIN {shadow} s ON s.pid = l.pid "
            "WHERE ({lc}) IS DISTINCT FROM ({sc}) ORDER BY l.pid LIMIT %(limit)s"
        )
    else:
        raise ValueError(which)
    return sql.SQL(query).format(
        live=live(dt), shadow=shadow(dt), lc=_cols(data, "l"), sc=_cols(data, "s")
    )


def labels(table: sql.Identifier, natural_key: sql.Composable) -> sql.Composed:
    """(pid, natural key) of the rows whose PIDs are bound as one array; the key is SQL over a
    row `r` (a snapshot source's, sorsync.files)."""
    return sql.SQL("SELECT r.pid, {} FROM {} r WHERE r.pid = ANY(%s)").format(natural_key, table)


def count_rows(dt: Datatype) -> sql.Composed:
    return sql.SQL("SELECT count(*) FROM {}").format(live(dt))


def first_pids(dt: Datatype) -> sql.Composed:
    return sql.SQL("SELECT pid FROM {} ORDER BY pid LIMIT %(limit)s").format(live(dt))


def analyze(table: sql.Identifier) -> sql.Composed:
    # Temporary tables are never analysed by autovacuum; without statistics the comparison
    # joins may be planned as nested loops.
    return sql.SQL("ANALYZE {}").format(table)


def state_key(dt: Datatype) -> tuple[str, int, str, int]:
    """The key of `dt`'s row in krs.sync_state, in the order the statements below bind it."""
    return (dt.register, dt.register_version, dt.datatype, dt.version)


_STATE_KEY = "register, register_version, datatype, version"

READ_TOKEN = sql.SQL(
    "SELECT token FROM krs.sync_state WHERE register = %s AND register_version = %s"
    " AND datatype = %s AND version = %s"
)

SET_TOKEN = sql.SQL(
    f"INSERT INTO krs.sync_state ({_STATE_KEY}, token, updated_at) "
    "VALUES (%s, %s, %s, %s, %s, now()) "
    f"ON CONFLICT ({_STATE_KEY}) "
    "DO UPDATE SET token = excluded.token, updated_at = excluded.updated_at"
)

# The first insert of a state row without a page still needs a token: the start token is where
# a missing row would begin anyway. An existing token is never touched by these two.
MARK_SUCCESS = sql.SQL(
    f"INSERT INTO krs.sync_state ({_STATE_KEY}, token, updated_at, "
    "last_success_at, last_error) VALUES (%s, %s, %s, %s, %s, now(), now(), NULL) "
    f"ON CONFLICT ({_STATE_KEY}) "
    "DO UPDATE SET last_success_at = excluded.last_success_at, last_error = NULL"
)

MARK_ERROR = sql.SQL(
    f"INSERT INTO krs.sync_state ({_STATE_KEY}, token, updated_at, last_error) "
    "VALUES (%s, %s, %s, %s, %s, now(), %s) "
    f"ON CONFLICT ({_STATE_KEY}) DO UPDATE SET last_error = excluded.last_error"
)

SET_PROFILE = sql.SQL(
    "UPDATE krs.sync_state SET record_namespace = %s, drift = %s WHERE register = %s"
    " AND register_version = %s AND datatype = %s AND version = %s"
)

RUN_PROGRESS = sql.SQL(
    "UPDATE krs.sync_run SET pages = pages + 1, records = records + %s WHERE id = %s"
)
