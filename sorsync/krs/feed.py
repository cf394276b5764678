"""One page of a KRS Atom feed, parsed, and the parser (`parse_feed`, `parse_response`)."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from lxml import etree

from sorsync.datatypes import Datatype, FieldType
from sorsync.krs import wire
from sorsync.krs.errors import (
    TRANSIENT_HTTP_STATUS,
    DgwsFault,
    KrsError,
    MalformedResponse,
    ReplicationFault,
    SoapFault,
    TransportError,
)
from sorsync.krs.profile import FieldSeen, Profile
from sorsync.krs.records import MAX_TEXT_CHARS, bad_text, bounded, record_value, split_tag
from sorsync.xmlsafe import safe_parser

try:
    from sorsync.krs import _pgrows
except ImportError:  # installed without the compiled module (setup.py): the Python walk only
    _pgrows = None  # type: ignore[assignment]

NATIVE_WALK = _pgrows is not None
_fallback_said = threading.Event()


def walk_in_use() -> str:
    """Which page walk reads KRS pages in this installation, for people."""
    if NATIVE_WALK:
        return "compiled (sorsync.krs._pgrows)"
    return "Python (the compiled module is not installed)"


def _say_fallback_once() -> None:
    if _fallback_said.is_set():
        return
    _fallback_said.set()
    from sorsync.logs import get_logger

    get_logger("sorsync.krs").warning(
        "the compiled page walk is not installed (no C compiler at install, or"
        " SORSYNC_NO_EXTENSION=1); reading pages with the Python walk, which is slower"
    )


@dataclass(frozen=True, slots=True)
class Entry:
    """One `atom:entry`: the full current content of one row (one version of a unit)."""

    token: str  # 20 digits from atom:id after the last "/"
    pid: int  # the row id at the source: the token's last 10+ digits
    modified_at: datetime  # atom:updated, timezone-aware
    # One value per field of the datatype, in registry order: int for BIGINT, str for TEXT,
    # aware datetime for TIMESTAMP; None for an omitted element and for an open validTo.
    # A document datatype has two: the record's namespace and the record as JSON (records.py).
    values: tuple[object, ...]
    extra: dict[str, str] | None = None  # elements the registry does not know, by local name


@dataclass(frozen=True, slots=True)
class CopyRows:
    """A page's rows as one `COPY … (FORMAT BINARY)` stream, in `sync.sql.columns` order."""

    data: bytes
    count: int
    first_token: str
    last_token: str


@dataclass(frozen=True, slots=True)
class Page:
    """One page: its rows as entries, or (the fast path, when asked for) as `copy_rows`."""

    entries: list[Entry]
    unknown_elements: frozenset[str] = field(default_factory=frozenset)
    copy_rows: CopyRows | None = None
    profile: Profile | None = None  # document datatypes: the fields the page's records have

    @property
    def last_token(self) -> str | None:
        if self.copy_rows is not None:
            return self.copy_rows.last_token
        return self.entries[-1].token if self.entries else None

    def __len__(self) -> int:
        return self.copy_rows.count if self.copy_rows is not None else len(self.entries)


# --- parsing ----------------------------------------------------------------------------------
# Speed matters (the sync budget is ~20 µs per record for HTTP + parse): one lxml parse, then
# direct child iteration with Clark-notation tag comparisons; no XPath, no per-entry lookups of
# prefixes (which are arbitrary on the wire, docs/reference/krs-protocol.md §4.2).


_ENVELOPE = f"{{{wire.NS_SOAP}}}Envelope"
_BODY = f"{{{wire.NS_SOAP}}}Body"
_FAULT = f"{{{wire.NS_SOAP}}}Fault"
_RESPONSE = f"{{{wire.NS_KRS}}}ReplicationResponse"
_KRS_FAULT = f"{{{wire.NS_KRS}}}ReplicationFault"
_DGWS_FAULT = f"{{{wire.NS_MEDCOM}}}FaultCode"
_FEED = f"{{{wire.NS_ATOM}}}feed"
_ENTRY = f"{{{wire.NS_ATOM}}}entry"
_ID = f"{{{wire.NS_ATOM}}}id"
_UPDATED = f"{{{wire.NS_ATOM}}}updated"
_CONTENT = f"{{{wire.NS_ATOM}}}content"

_TEXT, _INT, _TIME, _VALID_TO = 0, 1, 2, 3
_OPEN_ENDED_YEAR = 2999  # NSP writes 2999-12-31 for "no end" (docs/reference/krs-protocol.md §4.3)
_TOKEN_DIGITS = 20
_BIGINT_MIN, _BIGINT_MAX = -(2**63), 2**63 - 1  # PostgreSQL bigint

_local = threading.local()  # lxml parsers must not be shared between threads


def _parser() -> etree.XMLParser:
    parser: etree.XMLParser | None = getattr(_local, "parser", None)
    if parser is None:
        # huge_tree: the client caps the answer's size (SORSYNC_KRS_MAX_ANSWER_BYTES), and the
        # walks below check depth and text length themselves, so a refusal can name the record
        # and field instead of libxml2's "text node too long" for the whole answer.
        parser = _local.parser = safe_parser(huge_tree=True)
    return parser


def parse_xml(body: bytes, what: str) -> etree._Element:
    """Parse untrusted XML safely; a DTD anywhere is refused (SOAP forbids it)."""
    if not body or not body.strip():
        raise MalformedResponse(f"{what} is empty; the connection was probably cut", transient=True)
    try:
        root = etree.fromstring(body, _parser())
    except etree.XMLSyntaxError as exc:
        if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
            raise MalformedResponse(
                f"{what} contains a DTD/entity declarations, which SOAP forbids; refused"
            ) from None
        if _at_end(body, exc):
            raise MalformedResponse(
                f"{what} is not well-formed XML ({bounded(str(exc))}); it was probably cut"
                " short — retrying",
                transient=True,
            ) from None
        # Broken before its end (invalid UTF-8, a control character, nesting too deep, …): the
        # same answer comes again on a retry, so a person has to look.
        raise MalformedResponse(
            f"{what} is not well-formed XML ({bounded(str(exc))}); it is broken before its end,"
            " so asking again gives the same answer — refused; report it to the source's"
            " operator (NSP) with the time"
        ) from None
    docinfo: Any = root.getroottree().docinfo  # lxml-stubs lack DocInfo.doctype
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise MalformedResponse(f"{what} contains a DTD (<!DOCTYPE>), which SOAP forbids; refused")
    return root


def _at_end(body: bytes, exc: etree.XMLSyntaxError) -> bool:
    """Did libxml2 stop at the very end of the body (a body cut short), not before it?"""
    line, column = exc.position
    last = body.rstrip().rsplit(b"\n", 1)[-1]
    lines = body.rstrip().count(b"\n") + 1
    # libxml2 counts columns in characters; the last line may hold multi-byte ones.
    return line >= lines and column >= len(last.decode("utf-8", "replace")) - 1


@dataclass(frozen=True, slots=True)
class _RecordSpec:
    tag: str  # Clark name of the record element
    tags: tuple[str, ...]  # Clark names of the fields, in feed order
    kinds: tuple[int, ...]  # _TEXT / _INT / _TIME / _VALID_TO per field
    index: dict[str, int]  # field position by Clark name
    # The same, as the native walker (_pgrows) takes it.
    native: tuple[bytes, bytes, tuple[bytes, ...], bytes]


@lru_cache(maxsize=64)
def _record_spec(dt: Datatype) -> _RecordSpec:
    kinds: list[int] = []
    for fld in dt.fields:
        if fld.type is FieldType.BIGINT:
            kinds.append(_INT)
        elif fld.type is FieldType.TIMESTAMP:
            kinds.append(_VALID_TO if fld.element.lower() == "validto" else _TIME)
        else:
            kinds.append(_TEXT)
    namespace = dt.namespace or ""  # a typed datatype always names its record namespace
    tags = tuple(f"{{{namespace}}}{fld.element}" for fld in dt.fields)
    return _RecordSpec(
        tag=f"{{{namespace}}}{dt.datatype}",
        tags=tags,
        kinds=tuple(kinds),
        index={tag: position for position, tag in enumerate(tags)},
        native=(
            namespace.encode(),
            dt.datatype.encode(),
            tuple(fld.element.encode() for fld in dt.fields),
            bytes(kinds),
        ),
    )


_REFUSED = (
    "; sorsync cannot store it, so the page is refused and the token did not move — report"
    " the record to the source's operator (NSP)"
)


def _timestamp(text: str, where: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise MalformedResponse(
            f"{where}: {bounded(text)!r} is not an ISO date-time{_REFUSED}"
        ) from None
    if value.tzinfo is None:
        raise MalformedResponse(
            f"{where}: {bounded(text)!r} has no UTC offset; refusing to guess a zone{_REFUSED}"
        )
    if not _in_range(value):
        raise MalformedResponse(
            f"{where}: {bounded(text)!r} lies outside the years 1 to 9999 in UTC{_REFUSED}"
        )
    return value


def _in_range(stamp: datetime) -> bool:
    """Does an aware datetime stay within years 1..9999 once in UTC (what PostgreSQL, Python
    and the API can all represent)?"""
    try:
        stamp.astimezone(UTC)
    except OverflowError:
        return False
    return True


def _token_of(id_text: str | None, dt: Datatype, number: int) -> str:
    """The digits after the last "/" of atom:id: 10 of seconds, then the PID (10 digits, or more
    for PIDs beyond 10 digits, docs/reference/krs-protocol.md §4.4, but within a bigint); else
    the page is refused."""
    token = id_text.rpartition("/")[2] if id_text else ""
    if (
        len(token) < _TOKEN_DIGITS
        or not (token.isascii() and token.isdigit())
        or len(token) > _TOKEN_DIGITS + 9  # a PID of more than 19 digits is beyond a bigint
        or int(token[10:]) > _BIGINT_MAX
    ):
        raise MalformedResponse(
            f"{dt.key}: entry {number} has no 20-digit token in atom:id"
            f" ({bounded(id_text)!r}){_REFUSED}"
        )
    return token


def _describe_tag(tag: object) -> str:
    return bounded(tag if isinstance(tag, str) else repr(tag))


def _bad_value(dt: Datatype, token: str, el: etree._Element, why: str) -> MalformedResponse:
    return MalformedResponse(
        f"{dt.key}: entry {token} (PID {int(token[10:])}) element {etree.QName(el).localname}:"
        f" value {bounded(el.text)!r} is not valid ({bounded(why)}){_REFUSED}"
    )


_BAD_TEXT = bad_text


_ATOM = wire.NS_ATOM.encode()
_SOAP = wire.NS_SOAP.encode()
_KRS = wire.NS_KRS.encode()


def _native_after(offset: str | None) -> bytes | None:
    """The offset as the native walks take it (b"" for none), or None where they cannot."""
    if offset is None:
        return b""
    try:
        seconds, pid = wire.split_token(offset)
    except ValueError:
        return b""  # the Python walks ignore such an offset too
    if seconds >= 10**10 or pid >= 10**10:
        return None
    return f"{seconds:010d}{pid:010d}".encode()


def _encode_rows(feed: etree._Element, dt: Datatype, offset: str | None) -> CopyRows | None:
    """The page's rows encoded by the native walker, or None where only the walk below may
    judge them (an odd value, an unknown element, an error to report) or there are none."""
    after = _native_after(offset)
    if after is None:
        return None
    record_ns, record_name, names, kinds = _record_spec(dt).native
    encoded = _pgrows.encode(
        feed, _ATOM, record_ns, record_name, names, kinds, after, wire.MAX_RECORDS
    )
    return None if encoded is None else CopyRows(*encoded)


def _parse_feed_element(
    feed: etree._Element, dt: Datatype, offset: str | None, copy_rows: bool = False
) -> Page:
    if dt.is_document:
        if copy_rows and _pgrows is not None:
            native = _encode_documents(feed, dt, offset)
            if native is not None:
                return native
        return _parse_documents(feed, dt, offset)
    if copy_rows and not NATIVE_WALK:
        _say_fallback_once()
    elif copy_rows:
        encoded = _encode_rows(feed, dt, offset)
        if encoded is not None:
            return Page([], copy_rows=encoded)
    spec = _record_spec(dt)
    record_tag, tags, kinds = spec.tag, spec.tags, spec.kinds
    # Keyed by whatever lxml hands out as .tag (a function for comments): no type test per element.
    index_of: dict[Any, int] = dict(spec.index)
    width = len(tags)
    fromiso = datetime.fromisoformat
    entries: list[Entry] = []
    unknown: set[str] = set()
    previous: tuple[int, int] | None = None
    if offset is not None:
        try:
            previous = wire.split_token(offset)
        except ValueError:
            previous = None  # the server would have refused it; nothing to compare with

    for entry in feed.iterchildren(_ENTRY):
        token, previous, modified_at, record = _entry_header(entry, dt, len(entries) + 1, previous)
        if record.tag != record_tag:
            raise MalformedResponse(
                f"{dt.key}: entry {token}: expected record element {record_tag},"
                f" got {_describe_tag(record.tag)}; is SORSYNC_KRS_URL serving another register?"
            )

        values: list[object] = [None] * width
        extra: dict[str, str] | None = None
        expected = 0  # NSP writes fields in feed order, so the next tag is usually this one
        for el in record:
            el_tag: Any = el.tag
            if expected < width and el_tag == tags[expected]:
                index = expected
            else:
                found = index_of.get(el_tag)
                if found is None:
                    if isinstance(el_tag, str):  # not a comment / processing instruction
                        name = etree.QName(el).localname
                        if extra is None:
                            extra = {}
                        extra[name] = _checked_text(dt, token, el)
                        unknown.add(name)
                    continue
                index = found
            expected = index + 1
            kind = kinds[index]
            text = _checked_text(dt, token, el)
            if kind == _TEXT:
                values[index] = text
                continue
            try:
                if kind == _INT:
                    number = int(text)
                    if not _BIGINT_MIN <= number <= _BIGINT_MAX:
                        raise _bad_value(dt, token, el, "beyond a 64-bit integer")
                    values[index] = number
                else:
                    stamp = fromiso(text)
                    if stamp.tzinfo is None:
                        raise _bad_value(dt, token, el, "no UTC offset; refusing to guess a zone")
                    if not _in_range(stamp):
                        raise _bad_value(dt, token, el, "outside the years 1 to 9999 in UTC")
                    values[index] = (
                        None if kind == _VALID_TO and stamp.year >= _OPEN_ENDED_YEAR else stamp
                    )
            except (TypeError, ValueError) as exc:
                if not text.strip():
                    continue  # an empty number/date is the pre-2013 rendering of NULL
                raise _bad_value(dt, token, el, str(exc)) from None
        entries.append(Entry(token, previous[1], modified_at, tuple(values), extra))

    if len(entries) > wire.MAX_RECORDS:
        raise MalformedResponse(
            f"{dt.key}: the server sent {len(entries)} records, more than the protocol's"
            f" {wire.MAX_RECORDS}; refusing the page"
        )
    return Page(entries, frozenset(unknown))


def _checked_text(dt: Datatype, token: str, el: etree._Element) -> str:
    """A field's text ("" for none), refused when it holds what no column should: a child
    element (a field is text), a control character, or more than MAX_TEXT_CHARS."""
    text = el.text
    if len(el) and any(isinstance(child.tag, str) for child in el):
        raise _bad_value(dt, token, el, "it holds elements, a field holds only text")
    if text is None:
        return ""
    if len(text) > MAX_TEXT_CHARS:
        raise MalformedResponse(
            f"{dt.key}: entry {token} (PID {int(token[10:])}) element"
            f" {etree.QName(el).localname}: value {bounded(text)!r} is {len(text)} characters"
            f" long, more than {MAX_TEXT_CHARS}{_REFUSED}"
        )
    if _BAD_TEXT.search(text):
        raise _bad_value(dt, token, el, "a control character")
    return text


def _entry_header(
    entry: etree._Element, dt: Datatype, number: int, previous: tuple[int, int] | None
) -> tuple[str, tuple[int, int], datetime, Any]:
    """(token, (seconds, pid), modified_at, record element) of one atom:entry, checked."""
    id_text: str | None = None
    updated: str | None = None
    record: Any = None
    for child in entry:
        tag = child.tag
        if tag == _ID:
            id_text = child.text
        elif tag == _UPDATED:
            updated = child.text
        elif tag == _CONTENT:
            record = next((c for c in child if isinstance(c.tag, str)), None)
    token = _token_of(id_text, dt, number)
    order = (int(token[:10]), int(token[10:]))
    if previous is not None and order <= previous:
        raise MalformedResponse(
            f"{dt.key}: entry {number} token {token} does not come after the previous"
            f" token/offset {previous[0]:010d}{previous[1]:010d}; the server's order is broken"
        )
    if not updated:
        raise MalformedResponse(f"{dt.key}: entry {token} has no atom:updated")
    modified_at = _timestamp(updated, f"{dt.key}: entry {token} atom:updated")
    if record is None:
        raise MalformedResponse(f"{dt.key}: entry {token} has no record in atom:content")
    return token, order, modified_at, record


PROFILED_ENTRIES = 25  # a natively read page's records whose values are typed for the profile


def _encode_documents(feed: etree._Element, dt: Datatype, offset: str | None) -> Page | None:
    """A page of whole records as the native walk writes them (the same JSON as records.py's
    one-pass read), or None where only `_parse_documents` may judge the page. The field counts
    come from every record; types and samples from the first PROFILED_ENTRIES."""
    after = _native_after(offset)
    if after is None:
        return None
    encoded = _pgrows.encode_documents(feed, _ATOM, after, wire.MAX_RECORDS)
    if encoded is None:
        return None
    data, count, first, last, namespace, name, counts = encoded
    records = []
    for n, entry in enumerate(feed.iterchildren(_ENTRY)):
        if n == PROFILED_ENTRIES:
            break
        record = next(c for e in entry.iterchildren(_CONTENT) for c in e if isinstance(c.tag, str))
        records.append(record_value(record, f"{dt.key}: entry {n + 1}"))
    return _document_page(data, count, first, last, namespace, name, counts, records)


def _scan_documents(body: bytes, offset: str | None, envelope: bool) -> Page | None:
    """A page of whole records read from the answer's bytes with no tree (`_pgrows.scan_documents`),
    or None where lxml's parse and the walks above must judge it: the same rows, namespace,
    field counts and profile as `_encode_documents` gives for the page."""
    after = _native_after(offset)
    if after is None or not isinstance(body, bytes):
        return None
    scanned = _pgrows.scan_documents(
        body, envelope, _ATOM, _SOAP, _KRS, after, wire.MAX_RECORDS, PROFILED_ENTRIES
    )
    if scanned is None:
        return None
    return _document_page(*scanned)


def _document_page(
    data: bytes,
    count: int,
    first: str,
    last: str,
    namespace: str | None,
    name: str,
    counts: list[tuple[str, int]],
    records: Sequence[Mapping[str, Any]],
) -> Page:
    """A page of natively encoded whole records, profiled from its first records' values and
    the page's per-field counts."""
    profile = Profile()
    for record in records:
        profile.add(namespace or "", name, record)
    profile.records = count
    profile.namespaces = {namespace or "": count}
    profile.record_names = {name: count}
    for field_name, seen in counts:
        profile.fields.setdefault(field_name, FieldSeen()).count = seen
    return Page([], copy_rows=CopyRows(data, count, first, last), profile=profile)


def _parse_documents(feed: etree._Element, dt: Datatype, offset: str | None) -> Page:
    """Every entry's record kept whole (records.py), whatever element and namespace it has."""
    previous: tuple[int, int] | None = None
    if offset is not None:
        try:
            previous = wire.split_token(offset)
        except ValueError:
            previous = None
    entries: list[Entry] = []
    profile = Profile()
    for entry in feed.iterchildren(_ENTRY):
        if len(entries) >= wire.MAX_RECORDS:
            raise MalformedResponse(
                f"{dt.key}: the server sent more than the protocol's {wire.MAX_RECORDS} records"
                " in one page; refusing the page"
            )
        token, previous, modified_at, record = _entry_header(entry, dt, len(entries) + 1, previous)
        namespace, name = split_tag(str(record.tag))
        value = record_value(record, f"{dt.key}: entry {token} (PID {previous[1]})")
        profile.add(namespace, name, value)
        entries.append(Entry(token, previous[1], modified_at, (namespace or None, value)))
    return Page(entries, profile=profile)


def parse_feed(
    xml: bytes, dt: Datatype, *, offset: str | None = None, copy_rows: bool = False
) -> Page:
    """Parse a bare `atom:feed` document (as in the KRS response body) for datatype `dt`.

    `offset`, when given, is the token the page was asked after: every entry must come after it.
    With `copy_rows`, a page that needs no judgement comes as `Page.copy_rows` instead of
    entries (the same rows, made in C; the sync's fast path).
    """
    if copy_rows and dt.is_document and _pgrows is not None:
        scanned = _scan_documents(xml, offset, envelope=False)
        if scanned is not None:
            return scanned
    root = parse_xml(xml, f"KRS feed for {dt.key}")
    if root.tag != _FEED:
        raise MalformedResponse(
            f"{dt.key}: expected an atom:feed ({_FEED}), got {_describe_tag(root.tag)}"
        )
    return _parse_feed_element(root, dt, offset, copy_rows)


def _local_children(parent: etree._Element) -> dict[str, etree._Element]:
    # faultcode/faultstring/detail are unqualified in SOAP 1.1, but tolerate qualified ones.
    found: dict[str, etree._Element] = {}
    for child in parent:
        if isinstance(child.tag, str):
            found.setdefault(etree.QName(child).localname, child)
    return found


def fault_error(fault: etree._Element, dt: Datatype, offset: str | None = None) -> KrsError:
    """The typed error for a `soapenv:Fault` element (docs/reference/krs-protocol.md §5)."""
    parts = _local_children(fault)
    faultcode = (parts["faultcode"].text or "").strip() if "faultcode" in parts else ""
    faultstring = (parts["faultstring"].text or "").strip() if "faultstring" in parts else ""
    detail = parts.get("detail")
    if detail is not None:
        # Extra children (e.g. the JAX-WS stack trace) are ignored on purpose.
        for child in detail.iter(_KRS_FAULT, _DGWS_FAULT):
            code = (child.text or "").strip()
            if child.tag == _KRS_FAULT:
                return ReplicationFault(
                    code, key=dt.key, offset=offset or "", faultstring=faultstring
                )
            return DgwsFault(code, key=dt.key, faultstring=faultstring)
    return SoapFault(faultcode or "(none)", faultstring, key=dt.key)


def _http_error(status: int, dt: Datatype) -> TransportError:
    if status == 404:
        text = (
            f"KRS answered HTTP 404 for {dt.key}: no service at that address; check"
            f" SORSYNC_KRS_URL (it should end in {wire.SERVICE_PATH})"
        )
    elif status in (401, 403, 407):
        text = (
            f"KRS answered HTTP {status} for {dt.key} without a SOAP fault: a proxy or firewall"
            " refused the call; check network access to NSP"
        )
    else:
        text = f"KRS answered HTTP {status} for {dt.key} without a SOAP answer"
        if status in TRANSIENT_HTTP_STATUS:
            text += "; the server is busy or restarting — retrying later usually helps"
    return TransportError(text, transient=status in TRANSIENT_HTTP_STATUS, status=status)


def parse_response(
    body: bytes, status: int, dt: Datatype, *, offset: str | None = None, copy_rows: bool = False
) -> Page:
    """Turn one HTTP answer of `replicate` into a Page, or raise the matching KrsError.

    `offset` and `copy_rows` as for `parse_feed`. Faults (HTTP 500 with a SOAP Fault) become
    ReplicationFault / DgwsFault / SoapFault; other HTTP errors TransportError; anything else
    unexpected MalformedResponse.
    """
    if copy_rows and status == 200 and dt.is_document and _pgrows is not None:
        # The common page, read with no tree; anything else is parsed by lxml below.
        scanned = _scan_documents(body, offset, envelope=True)
        if scanned is not None:
            return scanned
    what = f"KRS answer for {dt.key} (HTTP {status})"
    try:
        root = parse_xml(body, what)
    except MalformedResponse:
        if status != 200:
            raise _http_error(status, dt) from None
        raise
    soap_body = None
    if root.tag == _ENVELOPE:
        for child in root:
            if child.tag == _BODY:
                soap_body = child
                break
    if soap_body is None:
        if status != 200:
            raise _http_error(status, dt)
        raise MalformedResponse(
            f"{what} is XML but not a SOAP 1.1 envelope (root {_describe_tag(root.tag)})"
        )
    payload = next((c for c in soap_body if isinstance(c.tag, str)), None)
    if payload is not None and payload.tag == _FAULT:
        raise fault_error(payload, dt, offset)
    if status != 200:
        raise _http_error(status, dt)
    if payload is None or payload.tag != _RESPONSE:
        got = "nothing" if payload is None else _describe_tag(payload.tag)
        raise MalformedResponse(f"{what}: expected {_RESPONSE} in the SOAP body, got {got}")
    feed = next((c for c in payload if isinstance(c.tag, str)), None)
    if feed is None or feed.tag != _FEED:
        got = "nothing" if feed is None else _describe_tag(feed.tag)
        raise MalformedResponse(f"{what}: ReplicationResponse holds no atom:feed (got {got})")
    return _parse_feed_element(feed, dt, offset, copy_rows)
