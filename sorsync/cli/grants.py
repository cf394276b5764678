"""`sorsync db grant-readonly ROLE`: let a database role read the `sor` views and nothing else."""

from __future__ import annotations

import typer
from sqlalchemy import Engine, text

from sorsync.cli.app import EXIT_FAILED, db_app
from sorsync.cli.common import writable_url
from sorsync.db.engine import make_engine
from sorsync.db.models import SOR_SCHEMA


class GrantError(Exception):
    """The grant cannot be made; the message says why and what to do."""


def grant_readonly(engine: Engine, role: str) -> None:
    """GRANT USAGE on schema sor, SELECT on its views and EXECUTE on its functions (sor.resolve,
    sor.resolve_code, sor.shak_to_sor, …) to `role`, also on views and functions created later
    by this user. Views run with their owner's rights, so the role needs nothing on schema krs
    and gets nothing there; the functions read only the views."""
    if not role or len(role.encode()) > 63 or "\x00" in role:
        raise GrantError("a role name is 1 to 63 bytes")
    with engine.begin() as conn:
        if (
            conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).first()
            is None
        ):
            raise GrantError(
                f"role {role!r} does not exist; create it first, e.g. "
                f"CREATE ROLE \"{role}\" LOGIN PASSWORD '…'"
            )
        if (
            conn.execute(
                text("SELECT 1 FROM pg_namespace WHERE nspname = :s"), {"s": SOR_SCHEMA}
            ).first()
            is None
        ):
            raise GrantError("schema sor does not exist yet; run `sorsync db upgrade` first")
        # Quoted by PostgreSQL itself: the name is an identifier, it cannot be a bound value.
        quoted = conn.execute(text("SELECT quote_ident(:r)"), {"r": role}).scalar_one()
        conn.execute(text(f"GRANT USAGE ON SCHEMA {SOR_SCHEMA} TO {quoted}"))
        conn.execute(text(f"GRANT SELECT ON ALL TABLES IN SCHEMA {SOR_SCHEMA} TO {quoted}"))
        conn.execute(
            text(
                f"ALTER DEFAULT PRIVILEGES IN SCHEMA {SOR_SCHEMA} "
                f"GRANT SELECT ON TABLES TO {quoted}"
            )
        )
        # PUBLIC may execute new functions by default, but a hardened database revokes that.
        conn.execute(text(f"GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {SOR_SCHEMA} TO {quoted}"))
        conn.execute(
            text(
                f"ALTER DEFAULT PRIVILEGES IN SCHEMA {SOR_SCHEMA} "
                f"GRANT EXECUTE ON FUNCTIONS TO {quoted}"
            )
        )


@db_app.command("grant-readonly")
def grant_readonly_command(
    role: str = typer.Argument(
        ..., metavar="ROLE", help="An existing PostgreSQL role (e.g. analysts)."
    ),
) -> None:
    """Grant ROLE read access to the sor views (sor.unit, sor.unit_current, sor.shak_map) and
    the back-mapping functions (sor.resolve, sor.resolve_code, sor.shak_to_sor)."""
    engine = make_engine(writable_url(), pool=False)
    try:
        grant_readonly(engine, role)
    except GrantError as exc:
        typer.echo(f"cannot grant: {exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    finally:
        engine.dispose()
    typer.echo(
        f"{role} may now read schema sor (SELECT on its views, EXECUTE on its functions);"
        " nothing in schema krs"
    )
