"""The replica never depends on a field list: through the real CLI (`sorsync krs describe`,
`sorsync sync`) and the views built from the mapping, against the simulator over HTTP.

* a renamed field at the source: `describe` reports exactly that difference, a sync warns once
  and records it (status), and a mapping override brings the column back without a re-sync;
* a field that appears at the source is in SQL after the next delta, and a mapping override
  gives it a typed column;
* another record namespace is accepted and recorded;
* a datatype nothing knows replicates with every field.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from sorsync.datatypes import SOR2_DATATYPES, lookup
from sorsync.db import views
from sorsync.mapping import default_mapping, load_mapping
from sorsync.simulator.generator import generate, write_sortree
from sorsync.simulator.importer import load_snapshot
from sorsync.simulator.server import SimulatorHandle, serve_in_thread
from sorsync.simulator.sor2 import SORENTITY, RecordShape
from sorsync.simulator.store import Store
from tests.fixtures.api import empty_replica
from tests.fixtures.simulator import add_rows

KEYS = ",".join(SOR2_DATATYPES)


@pytest.fixture
def sim() -> Iterator[SimulatorHandle]:
    store = Store()
    buffer = io.BytesIO()
    write_sortree(generate(120, seed=5), buffer)
    buffer.seek(0)
    load_snapshot(store, buffer)
    handle = serve_in_thread(store)
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def replica(engine: Engine) -> Iterator[Engine]:
    empty_replica(engine)
    yield engine
    empty_replica(engine)


def sorsync(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sorsync", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def env_for(database_url: str, sim: SimulatorHandle, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SORSYNC_")}
    env.update(
        SORSYNC_DATABASE_URL=database_url,
        SORSYNC_KRS_URL=sim.url,
        SORSYNC_KRS_DATATYPES=KEYS,
        SORSYNC_KRS_PAGE_SIZE="50",  # several pages: the warning must still come once
    )
    env.update(extra)
    return env


def test_a_renamed_field_is_reported_warned_once_and_mapped_back_without_resync(
    replica: Engine, database_url: str, sim: SimulatorHandle, tmp_path: Path
) -> None:
    env = env_for(database_url, sim)
    before = sorsync(["krs", "describe", SORENTITY, "--json", "--pages", "10"], env, tmp_path)
    assert before.returncode == 0, before.stderr
    assert json.loads(before.stdout)[0]["mapping"] == {
        "mapped_not_seen": [],
        "seen_not_mapped": [],
    }

    sim.set_shape(RecordShape.from_options(rename=["sorentity:EntityName=Name"]))
    after = sorsync(["krs", "describe", SORENTITY, "--json", "--pages", "10"], env, tmp_path)
    described = json.loads(after.stdout)[0]
    assert described["mapping"] == {
        "mapped_not_seen": ["EntityName"],
        "seen_not_mapped": ["Name"],
    }
    assert described["fields"]["Name"]["count"] == described["records"]
    text_out = sorsync(["krs", "describe", SORENTITY], env, tmp_path).stdout
    assert "mapped but never seen: EntityName" in text_out
    assert "seen but not mapped (kept in record): Name" in text_out

    done = sorsync(["sync", "--full"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "differ from the mapping" in line]
    assert len(warnings) == 1, done.stderr
    assert "mapped but not seen: EntityName" in warnings[0]
    assert "not mapped: Name" in warnings[0]
    status = json.loads(sorsync(["status", "--json"], env, tmp_path).stdout)
    entity = next(d for d in status["datatypes"] if d["datatype"] == SORENTITY)
    assert entity["field_drift"] == {"mapped_not_seen": ["EntityName"], "seen_not_mapped": ["Name"]}
    with replica.connect() as conn:
        assert conn.execute(text("SELECT count(name) FROM sor.unit")).scalar_one() == 0

    # The operator maps the new name: the column is filled from what is stored, no sync.
    override = tmp_path / "mapping.toml"
    override.write_text('[fields.sorentity]\nentity_name = "Name"\n', encoding="utf-8")
    assert views.ensure(replica, load_mapping(override))
    with replica.connect() as conn:
        named = conn.execute(text("SELECT count(name), count(*) FROM sor.unit")).one()
        runs = conn.execute(text("SELECT count(*) FROM krs.sync_run")).scalar_one()
    assert named[0] == named[1] > 0
    assert runs == 1


def test_a_new_source_field_is_in_sql_after_the_next_delta_and_can_be_typed(
    replica: Engine, database_url: str, sim: SimulatorHandle, tmp_path: Path
) -> None:
    env = env_for(database_url, sim)
    assert sorsync(["sync", "--full"], env, tmp_path).returncode == 0
    table = sim.store.table(SORENTITY)
    row = next(iter(table))
    sor_id = int(str(row.values["SorId"]))
    add_rows(
        sim.store, SORENTITY, [], update={row.pid: {**row.values, "ClosingNote": "2031-02-03"}}
    )

    delta = sorsync(["sync"], env, tmp_path)
    assert delta.returncode == 0, delta.stderr
    with replica.connect() as conn:
        raw = conn.execute(
            text(
                "SELECT record ->> 'ClosingNote' FROM krs.sor_v2_sorentity_v1"
                " WHERE record ->> 'SorId' = :s"
            ),
            {"s": str(sor_id)},
        ).scalar_one()
    assert raw == "2031-02-03"

    override = tmp_path / "mapping.toml"
    override.write_text(
        '[fields.sorentity]\nclosing_note = { element = "ClosingNote", type = "date" }\n',
        encoding="utf-8",
    )
    assert views.ensure(replica, load_mapping(override))
    with replica.connect() as conn:
        typed = conn.execute(
            text("SELECT closing_note FROM sor.sorentity WHERE sor_id = :s"), {"s": sor_id}
        ).scalar_one()
    assert str(typed) == "2031-02-03"
    views.ensure(replica, default_mapping())


def test_another_record_namespace_is_accepted_and_recorded(
    replica: Engine, database_url: str, sim: SimulatorHandle, tmp_path: Path
) -> None:
    sim.set_shape(RecordShape(namespace="urn:example:sor2:records"))
    env = env_for(database_url, sim)
    done = sorsync(["sync", "--full"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    with replica.connect() as conn:
        spaces = (
            conn.execute(text("SELECT DISTINCT record_namespace FROM krs.sor_v2_sorentity_v1"))
            .scalars()
            .all()
        )
        state = conn.execute(
            text("SELECT record_namespace FROM krs.sync_state WHERE datatype = 'sorentity'")
        ).scalar_one()
        names = conn.execute(text("SELECT count(name) FROM sor.unit")).scalar_one()
    assert spaces == ["urn:example:sor2:records"]
    assert state == "urn:example:sor2:records"
    assert names > 0


def test_a_datatype_nothing_knows_replicates_with_every_field(
    replica: Engine, database_url: str, tmp_path: Path
) -> None:
    key = "sor/v2/eanlocationcodeeditype/v1"  # NSP's example datatype; nothing maps it
    dt = lookup(key)
    assert dt.is_document
    store = Store({key: dt})
    add_rows(
        store,
        key,
        [
            {
                "EanLocationCode": "5790001000059",
                "SorId": "100071000016000",
                "SystemSupplierName": "Fiktiv A/S",
            },
            {"EanLocationCode": "5790001000066", "NonActiveIndicator": "true"},
        ],
    )
    handle = serve_in_thread(store)
    try:
        env = env_for(database_url, handle, SORSYNC_KRS_DATATYPES=key)
        done = sorsync(["sync", "--full", "--json"], env, tmp_path)
        assert done.returncode == 0, done.stderr
        described = json.loads(sorsync(["krs", "describe", key, "--json"], env, tmp_path).stdout)[0]
    finally:
        handle.stop()
    assert described["mapping"] is None
    assert set(described["fields"]) == {
        "EanLocationCode",
        "SorId",
        "SystemSupplierName",
        "NonActiveIndicator",
    }
    with replica.connect() as conn:
        records = (
            conn.execute(text(f'SELECT record FROM krs."{dt.table}" ORDER BY pid')).scalars().all()
        )
    assert records == [
        {
            "EanLocationCode": "5790001000059",
            "SorId": "100071000016000",
            "SystemSupplierName": "Fiktiv A/S",
        },
        {"EanLocationCode": "5790001000066", "NonActiveIndicator": "true"},
    ]
