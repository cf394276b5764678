"""The sync measurements. Each function runs in a child process of its own (`common.in_child`),
talks to a simulator in another process over loopback HTTP, and returns one dict of figures.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from bench.common import KEY, cpu_seconds, fetch_pages, per_100k


def _quiet() -> None:
    from sorsync.logs import configure

    configure(level="WARNING")


def sorsync_sync(krs_url: str, db_url: str, kind: str) -> dict[str, Any]:
    """One `sorsync.sync.sync` run (kind full or delta) of the benchmark datatype."""
    _quiet()
    from sorsync.datatypes import DATATYPES
    from sorsync.db.engine import make_engine
    from sorsync.krs.client import KrsClient
    from sorsync.sync import sync

    engine = make_engine(db_url)
    with KrsClient(krs_url, timeout=120) as client:
        cpu0 = cpu_seconds()
        started = time.perf_counter()
        result = sync(engine, client, [DATATYPES[KEY]], kind=kind)  # type: ignore[arg-type]
        seconds = time.perf_counter() - started
        cpu = cpu_seconds() - cpu0
    engine.dispose()
    if not result.ok:
        raise RuntimeError(f"the benchmark sync failed: {result.error}")
    res = result.datatypes[0]
    return {
        "records": result.records,
        "seconds": round(seconds, 3),
        "records_per_s": round(result.records / seconds),
        "cpu_s": round(cpu, 3),
        "cpu_s_per_100k": per_100k(cpu, result.records),
        "store_s": round(res.store_seconds, 3),
        "inserted": res.inserted,
        "updated": res.updated,
        "pages": result.pages,
    }


# --- baseline (a): what a user would write by hand ------------------------------------------


def naive(krs_url: str, db_url: str, limit: int) -> dict[str, Any]:
    """zeep's generated service + lxml per entry + one ORM merge per record, commit per page.

    Stops after `limit` records (it is slow); the figures are per record, to be scaled.
    """
    _quiet()
    import zeep
    from sqlalchemy.orm import Session, registry

    from sorsync.datatypes import DATATYPES, FieldType
    from sorsync.db.engine import make_engine
    from sorsync.db.models import REPLICA_TABLES
    from sorsync.krs.wire import NS_ATOM
    from sorsync.krs.wsdl import wsdl_path

    dt = DATATYPES[KEY]

    class Unit:  # the mapped class a user would declare
        pass

    registry().map_imperatively(Unit, REPLICA_TABLES[KEY])
    engine = make_engine(db_url)
    client = zeep.Client(str(wsdl_path()), settings=zeep.Settings(xml_huge_tree=True))  # type: ignore[no-untyped-call]
    service = client.create_service(next(iter(client.wsdl.bindings)), krs_url)  # type: ignore[no-untyped-call]
    atom = f"{{{NS_ATOM}}}"
    records = 0
    offset = "0"
    cpu0 = cpu_seconds()
    started = time.perf_counter()
    while records < limit:
        result = service.replicate(
            register=dt.register,
            datatype=dt.datatype,
            version=dt.version,
            offset=offset,
            maxRecords=2000,
        )
        feed = result[0]
        entries = feed.findall(f"{atom}entry")
        if not entries:
            break
        with Session(engine) as session:
            for entry in entries:
                token = entry.findtext(f"{atom}id").rsplit("/", 1)[1]
                record = entry.find(f"{atom}content")[0]
                unit = Unit()
                unit.pid = int(token[10:])  # type: ignore[attr-defined]
                unit.token = token  # type: ignore[attr-defined]
                unit.modified_at = datetime.fromisoformat(entry.findtext(f"{atom}updated"))  # type: ignore[attr-defined]
                for f in dt.fields:
                    text = record.findtext(f"{{{dt.namespace}}}{f.element}")
                    value: object = text
                    if text is not None and f.type is FieldType.BIGINT:
                        value = int(text)
                    elif text is not None and f.type is FieldType.TIMESTAMP:
                        stamp = datetime.fromisoformat(text)
                        value = None if stamp.year >= 2999 else stamp
                    setattr(unit, f.column, value)
                session.merge(unit)
                records += 1
            session.commit()
        offset = token
    seconds = time.perf_counter() - started
    cpu = cpu_seconds() - cpu0
    engine.dispose()
    return {
        "records": records,
        "seconds": round(seconds, 3),
        "records_per_s": round(records / seconds),
        "cpu_s": round(cpu, 3),
        "cpu_s_per_100k": per_100k(cpu, records),
    }


# --- baseline (b): the machine's limit ------------------------------------------------------


def limit(krs_url: str, db_url: str) -> dict[str, Any]:
    """Parse-only (lxml `fromstring` of every page, fetched beforehand) and COPY-only (the same
    rows' COPY BINARY streams, encoded beforehand, into an unindexed table), each timed alone."""
    _quiet()
    import psycopg
    from lxml import etree
    from sqlalchemy import make_url

    from sorsync.datatypes import DATATYPES
    from sorsync.krs.feed import parse_response
    from sorsync.sync import sql

    dt = DATATYPES[KEY]
    fetch_started = time.perf_counter()
    bodies = [body for _offset, body in fetch_pages(krs_url)]
    fetch_s = time.perf_counter() - fetch_started
    streams = []
    for body in bodies:
        encoded = parse_response(body, 200, dt, copy_rows=True).copy_rows
        assert encoded is not None, "the benchmark feed should need no judgement"
        streams.append(encoded)
    records = sum(s.count for s in streams)

    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    started = time.perf_counter()
    for body in bodies:
        etree.fromstring(body, parser)
    parse_s = time.perf_counter() - started

    conninfo = make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as pg:
        pg.execute("CREATE TABLE bench_copy_only (LIKE krs.sor_sygehusafdeling_v1)")
        copy_sql = f"COPY bench_copy_only ({', '.join(sql.columns(dt))}) FROM STDIN (FORMAT BINARY)"
        started = time.perf_counter()
        with pg.transaction(), pg.cursor() as cur:
            for stream in streams:  # one COPY per page, as the sync does
                with cur.copy(copy_sql) as copy:
                    copy.write(stream.data)
        copy_s = time.perf_counter() - started
        pg.execute("DROP TABLE bench_copy_only")
    return {
        "records": records,
        "pages": len(bodies),
        "fetch_s": round(fetch_s, 3),  # HTTP + our parse, for reference only
        "parse_s": round(parse_s, 3),
        "copy_s": round(copy_s, 3),
        "seconds": round(parse_s + copy_s, 3),
        "records_per_s": round(records / (parse_s + copy_s)),
        "bytes_per_record": round(sum(map(len, bodies)) / max(1, records)),
    }
