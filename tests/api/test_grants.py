"""`sorsync db grant-readonly`: the role reads the sor views and nothing in schema krs."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import ProgrammingError
from typer.testing import CliRunner

from sorsync.cli.app import app
from sorsync.cli.grants import GrantError, grant_readonly
from sorsync.config import get_settings
from tests.fixtures.api import SorData


@pytest.fixture
def role(engine: Engine) -> Iterator[str]:
    # Roles are cluster-wide: a unique name, with an awkward character to exercise quoting.
    name = f"sorsync-analyst {uuid.uuid4().hex[:8]}"
    with engine.begin() as conn:
        conn.execute(text(f'CREATE ROLE "{name}" NOLOGIN'))
    yield name
    with engine.begin() as conn:
        conn.execute(text(f'DROP OWNED BY "{name}"'))
        conn.execute(text(f'DROP ROLE "{name}"'))


def _as_role(engine: Engine, role: str, sql: str) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        try:
            conn.execute(text("SELECT set_config('role', :r, true)"), {"r": role})
            return [tuple(r) for r in conn.execute(text(sql))]
        finally:
            conn.rollback()


def test_grant_readonly(engine: Engine, sor_data: SorData, role: str) -> None:
    with pytest.raises(ProgrammingError, match="permission denied"):
        _as_role(engine, role, "SELECT count(*) FROM sor.unit")
    grant_readonly(engine, role)
    assert _as_role(engine, role, "SELECT count(*) FROM sor.unit") == [(11,)]
    assert _as_role(engine, role, "SELECT count(*) FROM sor.shak_map WHERE shak = '800120'") == [
        (2,)
    ]
    assert _as_role(engine, role, "SELECT count(*) > 0 FROM sor.unit_current") == [(True,)]
    for table in ("krs.sor_sygehus_v1", "krs.sync_state"):
        with pytest.raises(ProgrammingError, match="permission denied"):
            _as_role(engine, role, f"SELECT * FROM {table}")
    grant_readonly(engine, role)  # idempotent


def test_grant_readonly_functions(engine: Engine, sor_data: SorData, role: str) -> None:
    """The role may call the back-mapping functions, even where PUBLIC may not (a hardened
    database), and functions created later too (default privileges)."""
    call = "SELECT status, sor_id::text FROM sor.shak_to_sor('800110', DATE '2020-01-01')"
    with engine.begin() as conn:
        conn.execute(text("REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA sor FROM PUBLIC"))
    try:
        with pytest.raises(ProgrammingError, match="permission denied"):
            _as_role(engine, role, call)
        grant_readonly(engine, role)
        assert _as_role(engine, role, call) == [("found", sor_data.department)]
        kinds = "SELECT status FROM sor.resolve_code('ean', :gln, DATE '2020-01-01')"
        with engine.connect() as conn:
            conn.execute(text("SELECT set_config('role', :r, true)"), {"r": role})
            got = conn.execute(text(kinds), {"gln": sor_data.hospital_gln}).scalars().all()
            conn.rollback()
        assert got == ["found"]
        with engine.begin() as conn:
            conn.execute(
                text("CREATE FUNCTION sor.later_one() RETURNS int LANGUAGE sql AS 'SELECT 1'")
            )
            conn.execute(text("REVOKE EXECUTE ON FUNCTION sor.later_one() FROM PUBLIC"))
        assert _as_role(engine, role, "SELECT sor.later_one()") == [(1,)]
    finally:
        with engine.begin() as conn:
            conn.execute(text("DROP FUNCTION IF EXISTS sor.later_one()"))
            conn.execute(text("GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA sor TO PUBLIC"))


def test_grant_unknown_role(engine: Engine) -> None:
    with pytest.raises(GrantError, match="does not exist"):
        grant_readonly(engine, "no such role " + uuid.uuid4().hex)
    with pytest.raises(GrantError, match="1 to 63"):
        grant_readonly(engine, "")


def test_grant_command(
    database_url: str, role: str, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SORSYNC_DATABASE_URL", database_url)
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        ok = runner.invoke(app, ["db", "grant-readonly", role])
        assert ok.exit_code == 0, ok.output
        assert "may now read schema sor" in ok.output
        assert _as_role(engine, role, "SELECT count(*) FROM sor.unit WHERE false") == [(0,)]
        bad = runner.invoke(app, ["db", "grant-readonly", "missing " + uuid.uuid4().hex])
        assert bad.exit_code == 1
        assert "does not exist" in bad.output
    finally:
        get_settings.cache_clear()
