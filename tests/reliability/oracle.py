"""An independent judge of the replica: read the KRS feed over HTTP and compare it with the
krs tables, row by row and column by column.

Deliberately shares no code with the sync path (no sorsync.krs, no sorsync.sync, not even the
datatype registry): the request is written by hand, sent with plain `requests`, parsed with
lxml, and the element → column mapping and the value types come from the database's own
catalogue. A bug in the client, parser or engine therefore cannot hide itself here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import requests
from lxml import etree
from sqlalchemy import Connection, Engine, text

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
KRS = "http://nsi.dk/2011/10/21/StamdataKrs/"
ATOM = "http://www.w3.org/2005/Atom"
ZERO = "0" * 20
SOR_KEYS = (
    "sor/sygehus/v1",
    "sor/sygehusafdeling/v1",
    "sor/praksis/v1",
    "sor/yder/v1",
    "sor/apotek/v1",
)
# SOR2 (registerVersion 2): each record is stored whole, as jsonb in column `record`.
SOR2_KEYS = ("sor/v2/sorentity/v1", "sor/v2/shaksormap/v1", "sor/v2/sorreplacedentity/v1")

_ENVELOPE = (
    '<S:Envelope xmlns:S="{soap}"><S:Body><k:ReplicationRequest xmlns:k="{krs}">'
    "<register>{register}</register><datatype>{datatype}</datatype><version>{version}</version>"
    "{register_version}<offset>{offset}</offset><maxRecords>{limit}</maxRecords>"
    "</k:ReplicationRequest></S:Body></S:Envelope>"
)
_CAMEL = re.compile(r"([a-z0-9])([A-Z])")


class OracleError(Exception):
    """The feed itself could not be read (the oracle refuses to guess)."""


@dataclass(frozen=True, slots=True)
class FeedRow:
    pid: int
    token: str
    updated: str  # atom:updated as sent
    elements: dict[str, str]  # record children by local name → text
    namespace: str = ""  # of the record element


def split_key(key: str) -> tuple[str, str, str, str]:
    """(register, register version, datatype, version) of `register[/vR]/datatype/vN`."""
    parts = key.split("/")
    if len(parts) == 3:
        return parts[0], "v1", parts[1], parts[2]
    register, register_version, datatype, version = parts
    return register, register_version, datatype, version


def table_name(key: str) -> str:
    register, register_version, datatype, version = split_key(key)
    if register_version == "v1":
        return f"{register}_{datatype}_{version}"
    return f"{register}_{register_version}_{datatype}_{version}"


def column_of(element: str) -> str:
    return _CAMEL.sub(r"\1_\2", element).lower()


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=True)


def fetch_page(
    session: requests.Session, url: str, key: str, offset: str, limit: int, timeout: float
) -> list[FeedRow]:
    register, register_version, datatype, version = split_key(key)
    body = _ENVELOPE.format(
        soap=SOAP,
        krs=KRS,
        register=register,
        datatype=datatype,
        version=version.removeprefix("v"),
        register_version=(
            ""
            if register_version == "v1"
            else f"<registerVersion>{register_version[1:]}</registerVersion>"
        ),
        offset=offset,
        limit=limit,
    ).encode()
    response = session.post(
        url,
        data=body,
        headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{KRS}replicate"'},
        timeout=timeout,
    )
    if response.status_code != 200:
        raise OracleError(f"{key} after {offset}: HTTP {response.status_code}")
    root = etree.fromstring(response.content, _parser())
    feed = root.find(f"{{{SOAP}}}Body/{{{KRS}}}ReplicationResponse/{{{ATOM}}}feed")
    if feed is None:
        raise OracleError(f"{key} after {offset}: no atom:feed in the answer")
    rows: list[FeedRow] = []
    for entry in feed.iterfind(f"{{{ATOM}}}entry"):
        token = (entry.findtext(f"{{{ATOM}}}id") or "").rpartition("/")[2]
        if not re.fullmatch(r"[0-9]{20,}", token):
            raise OracleError(f"{key}: entry without a token ({token!r})")
        content = entry.find(f"{{{ATOM}}}content")
        records = [c for c in (content if content is not None else []) if isinstance(c.tag, str)]
        if len(records) != 1:
            raise OracleError(f"{key}: entry {token} has {len(records)} records")
        elements = {
            etree.QName(child).localname: child.text or ""
            for child in records[0]
            if isinstance(child.tag, str)
        }
        updated = entry.findtext(f"{{{ATOM}}}updated") or ""
        namespace = etree.QName(records[0]).namespace or ""
        rows.append(FeedRow(int(token[10:]), token, updated, elements, namespace))
    return rows


def read_feed(
    url: str, key: str, *, limit: int = 2000, timeout: float = 30.0
) -> dict[int, FeedRow]:
    """The source's current rows of `key` by PID: every page from token 0 until an empty one,
    a later delivery of a PID replacing the earlier one (docs/reference/krs-protocol.md §4.4)."""
    rows: dict[int, FeedRow] = {}
    offset = ZERO
    with requests.Session() as session:
        for _ in range(100_000):
            page = fetch_page(session, url, key, offset, limit, timeout)
            if not page:
                return rows
            for row in page:
                if (int(row.token[:10]), row.pid) <= (int(offset[:10]), int(offset[10:])):
                    raise OracleError(f"{key}: token {row.token} does not follow {offset}")
                rows[row.pid] = row
                offset = row.token
    raise OracleError(f"{key}: the feed did not end")


def last_token(rows: Mapping[int, FeedRow]) -> str | None:
    return max((r.token for r in rows.values()), default=None)


# --- the database side ------------------------------------------------------------------------


def column_types(engine: Engine, key: str) -> dict[str, str]:
    with engine.connect() as conn:
        result = conn.execute(
            text(
                "SELECT column_name, data_type FROM information_schema.columns"
                " WHERE table_schema = 'krs' AND table_name = :t"
            ),
            {"t": table_name(key)},
        )
        return {str(name): str(kind) for name, kind in result}


def _value(kind: str, column: str, raw: str) -> Any:
    if kind == "bigint":
        return int(raw)
    if kind.startswith("timestamp"):
        stamp = datetime.fromisoformat(raw)
        if column == "valid_to" and stamp.year >= 2999:
            return None  # the open end, stored as NULL (docs/reference/design.md §5)
        return stamp
    return raw


def expected_rows(
    feed: Mapping[int, FeedRow], types: Mapping[str, str]
) -> dict[int, dict[str, Any]]:
    """What each replica row must hold for the feed: every column, plus `extra` for elements
    that have no column; for a table that keeps records whole, the record and its namespace."""
    if "record" in types:
        return {
            pid: {
                "pid": pid,
                "token": row.token,
                "modified_at": datetime.fromisoformat(row.updated),
                "record_namespace": row.namespace or None,
                "record": dict(row.elements),
            }
            for pid, row in feed.items()
        }
    data_columns = [c for c in types if c not in ("pid", "modified_at", "token", "extra")]
    out: dict[int, dict[str, Any]] = {}
    for pid, row in feed.items():
        record: dict[str, Any] = dict.fromkeys(data_columns)
        extra: dict[str, str] = {}
        for element, raw in row.elements.items():
            column = column_of(element)
            if column in record:
                record[column] = _value(types[column], column, raw)
            else:
                extra[element] = raw
        record.update(
            pid=pid,
            token=row.token,
            modified_at=datetime.fromisoformat(row.updated),
            extra=extra or None,
        )
        out[pid] = record
    return out


def replica_in(conn: Connection, key: str) -> dict[int, dict[str, Any]]:
    result = conn.execute(text(f'SELECT * FROM krs."{table_name(key)}"'))
    return {int(r["pid"]): dict(r) for r in result.mappings()}


def tokens_in(conn: Connection) -> dict[str, str | None]:
    result = conn.execute(
        text("SELECT register, register_version, datatype, version, token FROM krs.sync_state")
    )
    return {(f"{r}/{d}/v{v}" if rv == 1 else f"{r}/v{rv}/{d}/v{v}"): t for r, rv, d, v, t in result}


def replica(engine: Engine, key: str) -> dict[int, dict[str, Any]]:
    with engine.connect() as conn:
        return replica_in(conn, key)


def tokens(engine: Engine) -> dict[str, str | None]:
    with engine.connect() as conn:
        return tokens_in(conn)


def consistent_state(
    engine: Engine, keys: Iterable[str]
) -> tuple[dict[str, dict[int, dict[str, Any]]], dict[str, str | None]]:
    """Every replica table and the tokens as of ONE snapshot, so a commit landing meanwhile
    cannot make the picture look half old, half new."""
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
        state = {key: replica_in(conn, key) for key in keys}
        return state, tokens_in(conn)


def diff(
    expected: Mapping[int, Mapping[str, Any]],
    actual: Mapping[int, Mapping[str, Any]],
    *,
    limit: int = 20,
) -> list[str]:
    """Human-readable differences (at most `limit`), empty when every row and column agrees.
    Timestamps compare as instants."""
    problems: list[str] = []
    for pid in sorted(set(expected) - set(actual)):
        problems.append(f"pid {pid}: at the source, missing from the replica")
    for pid in sorted(set(actual) - set(expected)):
        problems.append(f"pid {pid}: in the replica, not at the source")
    for pid in sorted(set(expected) & set(actual)):
        want, got = expected[pid], actual[pid]
        for column in sorted(set(want) | set(got)):
            source, ours = want.get(column), got.get(column)
            if source != ours:
                problems.append(f"pid {pid} {column}: replica {ours!r} != source {source!r}")
    return problems[:limit]


@dataclass(frozen=True, slots=True)
class Verdict:
    rows: int  # source rows compared
    columns: int  # values compared
    problems: dict[str, list[str]]  # key → differences
    token_problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.token_problems and not any(self.problems.values())

    def explain(self) -> str:
        lines = list(self.token_problems)
        for key, problems in self.problems.items():
            lines += [f"{key}: {p}" for p in problems]
        return "\n".join(lines)


def verdict(
    engine: Engine,
    expected: Mapping[str, Mapping[int, Mapping[str, Any]]],
    source_tokens: Mapping[str, str | None],
) -> Verdict:
    """Compare the replica and its tokens with rows already read from the feed."""
    problems: dict[str, list[str]] = {}
    token_problems: list[str] = []
    stored = tokens(engine)
    rows = columns = 0
    for key, want_rows in expected.items():
        problems[key] = diff(want_rows, replica(engine, key))
        rows += len(want_rows)
        columns += sum(len(r) for r in want_rows.values())
        want = source_tokens.get(key)
        if want is not None and stored.get(key) != want:
            token_problems.append(f"{key}: sync_state token {stored.get(key)} != source's {want}")
    return Verdict(rows, columns, problems, token_problems)


def compare(engine: Engine, url: str, keys: Iterable[str] = SOR_KEYS) -> Verdict:
    """Read the whole feed of each datatype and compare it with the replica and its tokens."""
    feeds = {key: read_feed(url, key) for key in keys}
    expected = {key: expected_rows(f, column_types(engine, key)) for key, f in feeds.items()}
    return verdict(engine, expected, {key: last_token(f) for key, f in feeds.items()})
