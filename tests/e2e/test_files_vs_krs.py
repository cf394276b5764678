"""The file export path against the KRS path, for one fictive tree.

The simulator's SOR2 tables (300 units, then a night of 40 changes) are synced over KRS (real
HTTP on 127.0.0.1), and the API's answers recorded; then the same tables, written as the public
export (`Sor_complete.zip`: BOM, `;`, `="…"` ids) and served by a static server on 127.0.0.1,
are imported into an emptied replica. Every lookup, the API and FHIR must answer the same.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, text
from starlette.testclient import TestClient

from sorsync.datatypes import SOR2_DATATYPES
from sorsync.datatypes import lookup as datatype
from sorsync.db import views
from sorsync.files.load import identity
from sorsync.krs.client import KrsClient
from sorsync.mapping import default_mapping
from sorsync.simulator.server import serve_in_thread
from sorsync.sync import sync
from sorsync.sync.service import run_sync
from tests.fixtures.api import empty_replica
from tests.fixtures.files import ExportServer, fictive_store, files_settings, write_fictive_export

DATATYPES = [datatype(key) for key in SOR2_DATATYPES]
DAYS = (None, "2020-01-01", "2024-06-30")

# Typed columns of sor.unit, everything but the row id (a PID is the source's own).
UNIT_COLUMNS = (
    "sor_id, kind, name, shak, ydernummer, ean, parent_sor_id, hospital_sor_id, praksis_sor_id,"
    " street, postcode, city, phone, email, www, specialty_code, specialty_text, valid_from,"
    " valid_to, modified_at, datatype, sor_type, entity_type, organisational_level_code,"
    " organisational_level_name, health_institution_name, institution_owner_sor_id,"
    " institution_owner_name, institution_owner_type, institution_owner_cvr, specialities::text,"
    " addresses::text, replaced_by, nsp_valid_from, nsp_valid_to"
)


def _answers(client: TestClient, engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        units = conn.execute(
            text(f"SELECT {UNIT_COLUMNS} FROM sor.unit ORDER BY sor_id, valid_from, name")
        ).all()
        # Ordered by every column: rows equal in the first few came back in either order, and
        # the two replicas then compared unequal (a fresh-clone run on the embedded server).
        shak = conn.execute(
            text(
                "SELECT shak, sor_id, kind, valid_from, valid_to FROM sor.shak_map"
                " ORDER BY 1, 2, 4, 3, 5"
            )
        ).all()
        links = conn.execute(text("SELECT * FROM sor.unit_link ORDER BY 1, 2, 3")).all()
        ids = conn.execute(text("SELECT DISTINCT sor_id FROM sor.unit ORDER BY 1")).scalars().all()
        codes = list(
            conn.execute(text("SELECT DISTINCT shak FROM sor.shak_map ORDER BY 1")).scalars()
        )
    out: dict[str, Any] = {"sor.unit": units, "sor.shak_map": shak, "sor.unit_link": links}
    for sor_id in ids[::3]:
        for day in DAYS:
            query = f"?date={day}" if day else ""
            out[f"/v1/sor/{sor_id}{query}"] = _get(client, f"/v1/sor/{sor_id}{query}")
        out[f"/v1/sor/{sor_id}/history"] = _get(client, f"/v1/sor/{sor_id}/history")
        out[f"/fhir/Organization/{sor_id}"] = _get(client, f"/fhir/Organization/{sor_id}")
    for code in codes[::2]:
        out[f"/v1/shak/{code}"] = _get(client, f"/v1/shak/{code}")
    batch = {"codes": codes[:50], "date": "2024-06-30"}
    out["/v1/shak/resolve"] = client.post("/v1/shak/resolve", json=batch).json()
    out["/v1/units"] = _get(client, "/v1/units?limit=200")
    out["/v1/units?kind=sygehusafdeling"] = _get(client, "/v1/units?kind=sygehusafdeling&limit=50")
    return out


def _get(client: TestClient, path: str) -> Any:
    answer = client.get(path)
    return answer.status_code, answer.json()


def test_the_file_export_answers_as_krs_does(
    engine: Engine, api_client: TestClient, export_server: ExportServer
) -> None:
    store = fictive_store()
    empty_replica(engine)
    handle = serve_in_thread(store)
    try:
        with KrsClient(handle.url, timeout=30) as client:
            result = sync(engine, client, DATATYPES, kind="full")
        assert result.ok, result.error
    finally:
        handle.stop()
    views.ensure(engine, default_mapping(), DATATYPES)
    from_krs = _answers(api_client, engine)

    empty_replica(engine)
    write_fictive_export(store, export_server.root / "Sor_complete.zip")
    url = export_server.url_of("Sor_complete.zip")
    imported = run_sync(engine, files_settings(url), kind="full")
    assert imported.ok, imported.error
    assert {d.key: d.records for d in imported.datatypes} == {
        key: len(store.table(key)) for key in SOR2_DATATYPES
    }
    from_files = _answers(api_client, engine)

    assert from_files.keys() == from_krs.keys()
    differing = [k for k in from_krs if from_files[k] != from_krs[k]]
    assert not differing, (differing[:5], from_krs[differing[0]], from_files[differing[0]])
    assert len(from_krs["sor.unit"]) > 300
    found = [v for v in from_krs.values() if isinstance(v, tuple) and v[0] == 200]
    assert len(found) > 300  # real answers, not a comparison of two 404s
    with engine.connect() as conn:
        sources = conn.execute(text("SELECT DISTINCT source FROM krs.sync_state")).scalars().all()
        run = conn.execute(
            text("SELECT kind, status, source, report FROM krs.sync_run ORDER BY id DESC LIMIT 1")
        ).one()
    assert set(sources) == {f"{identity(url)} {key}" for key in SOR2_DATATYPES}
    assert (run.kind, run.status, run.source) == ("full", "ok", identity(url))
    assert run.report["export"]["etag"]
    assert run.report["export"]["files"]["sor/v2/sorentity/v1"] == "Sor_complete.zip:SOREntity.csv"
