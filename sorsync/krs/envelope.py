"""The DGWS 1.0.1 request envelope around a ReplicationRequest (docs/reference/krs-protocol.md §3).

The SOSI ID card is signed by the STS with exclusive c14n, so it is spliced into the envelope as
the exact bytes the STS issued; nothing here re-serialises it through zeep or lxml. The headers
around it are a fixed template in the element order of NSP's own clients (the captured
request_raw_ddv.xml): wsse:Security(wsu:Timestamp, saml:Assertion), then medcom:Header.
"""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol, runtime_checkable
from xml.sax.saxutils import escape

from lxml import etree

from sorsync.krs import wire
from sorsync.krs.errors import IdCardError, IdCardExpired
from sorsync.xmlsafe import safe_parser


@runtime_checkable
class SecurityProvider(Protocol):
    """Where the client gets its SOSI ID card from (a file, or an STS via sorsync.dgws)."""

    def assertion(self) -> bytes | None:
        """The STS-issued saml:Assertion exactly as serialised by the STS, or None (no card).

        Raises a KrsError (e.g. IdCardExpired) rather than return a card that is no longer valid.
        """
        ...

    def renew(self) -> None:
        """Get a fresh card; called once after KRS answered `expired_idcard`, then retried."""
        ...


def created_timestamp(now: datetime | None = None) -> str:
    """`wsu:Created`: UTC, whole seconds, literal Z — SEAL rejects anything else."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# Namespaces declared on the envelope, as SEAL does; the card's own declarations still apply, and
# exclusive c14n only renders the ones the card uses, so its signature is unaffected.
_ENVELOPE_OPEN = "".join(
    (
        f'<soapenv:Envelope xmlns:soapenv="{wire.NS_SOAP}" xmlns:ds="{wire.NS_DS}"',
        f' xmlns:medcom="{wire.NS_MEDCOM}" xmlns:saml="{wire.NS_SAML}"',
        f' xmlns:sosi="{wire.NS_SOSI}" xmlns:wsse="{wire.NS_WSSE}" xmlns:wsu="{wire.NS_WSU}"',
        ' id="Envelope">',
    )
)


def build_envelope(
    body: bytes,
    *,
    assertion: bytes | None,
    message_id: str,
    flow_id: str,
    created: str,
    security_level: int = 3,
) -> bytes:
    """The complete request: DGWS headers, the card verbatim, `body` (a serialised element)."""
    head = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"{_ENVELOPE_OPEN}<soapenv:Header>"
        "<wsse:Security>"
        f"<wsu:Timestamp><wsu:Created>{escape(created)}</wsu:Created></wsu:Timestamp>"
    ).encode()
    tail = (
        "</wsse:Security>"
        "<medcom:Header>"
        f"<medcom:SecurityLevel>{int(security_level)}</medcom:SecurityLevel>"
        "<medcom:Linking>"
        f"<medcom:FlowID>{escape(flow_id)}</medcom:FlowID>"
        f"<medcom:MessageID>{escape(message_id)}</medcom:MessageID>"
        "</medcom:Linking>"
        "<medcom:RequireNonRepudiationReceipt>no</medcom:RequireNonRepudiationReceipt>"
        "</medcom:Header>"
        "</soapenv:Header>"
        "<soapenv:Body>"
    ).encode()
    return b"".join((head, assertion or b"", tail, body, b"</soapenv:Body></soapenv:Envelope>"))


# --- an ID card from a file ---------------------------------------------------------------------

_BOMS = (b"\xef\xbb\xbf",)
_DECLARATION = re.compile(rb"^\s*<\?xml\s[^>]*\?>", re.DOTALL)
_ENCODING = re.compile(rb"""encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_CONDITIONS = f"{{{wire.NS_SAML}}}Conditions"
_ASSERTION = f"{{{wire.NS_SAML}}}Assertion"
_WRAP_OPEN = (
    f'<sorsync-card xmlns:saml="{wire.NS_SAML}" xmlns:ds="{wire.NS_DS}"'
    f' xmlns:sosi="{wire.NS_SOSI}" xmlns:medcom="{wire.NS_MEDCOM}">'
).encode()
_WRAP_CLOSE = b"</sorsync-card>"


def _strip_card(raw: bytes, source: str) -> bytes:
    """The card's element bytes: BOM and XML declaration removed, nothing else touched.

    A card declared in another encoding is transcoded to UTF-8 (our envelope's encoding); that
    changes bytes but not the XML, and c14n — what the signature covers — is the same.
    """
    data = raw
    for bom in _BOMS:
        if data.startswith(bom):
            data = data[len(bom) :]
    declaration = _DECLARATION.match(data)
    encoding = "utf-8"
    if declaration:
        found = _ENCODING.search(declaration.group(0))
        if found:
            encoding = found.group(1).decode("ascii").lower()
        data = data[declaration.end() :]
    data = data.strip()
    if encoding not in ("utf-8", "utf8", "us-ascii", "ascii"):
        try:
            data = data.decode(encoding).encode("utf-8")
        except (LookupError, UnicodeDecodeError) as exc:
            raise IdCardError(f"cannot read the ID card in {source} as {encoding}: {exc}") from None
    return data


def _not_on_or_after(card: bytes, source: str) -> datetime:
    """saml:Conditions/@NotOnOrAfter, read from a parsed copy (the bytes stay untouched)."""
    if b"<!DOCTYPE" in card or b"<!ENTITY" in card:
        raise IdCardError(f"the ID card in {source} contains a DTD; refused")
    # Parsed inside a wrapper declaring the prefixes our envelope declares, so a card cut out of
    # an STS response that relied on its ancestors' declarations reads the same as on the wire.
    try:
        wrapper = etree.fromstring(_WRAP_OPEN + card + _WRAP_CLOSE, safe_parser())
    except etree.XMLSyntaxError as exc:
        raise IdCardError(
            f"{source} does not hold a well-formed saml:Assertion ({exc}); it must contain the"
            " STS-issued ID card element alone"
        ) from None
    elements = [child for child in wrapper if isinstance(child.tag, str)]
    root = elements[0] if len(elements) == 1 else None
    if root is None or root.tag != _ASSERTION:
        got = (
            "several elements"
            if len(elements) > 1
            else (root.tag if root is not None else "nothing")
        )
        raise IdCardError(
            f"{source} holds {got}, not a SOSI ID card ({_ASSERTION}); extract the"
            ' saml:Assertion with id="IDCard" from the STS response, unmodified'
        )
    conditions = root.find(_CONDITIONS)
    value = conditions.get("NotOnOrAfter") if conditions is not None else None
    if not value:
        raise IdCardError(f"the ID card in {source} has no saml:Conditions/@NotOnOrAfter")
    try:
        until = datetime.fromisoformat(value.strip())
    except ValueError:
        raise IdCardError(
            f"the ID card in {source} has an unreadable NotOnOrAfter {value!r}"
        ) from None
    if until.tzinfo is None:
        until = until.replace(tzinfo=UTC)  # SAML times are UTC by definition
    return until


class FileIdCard:
    """`SORSYNC_IDCARD_FILE`: an STS-issued SOSI ID card kept in a file, sent verbatim.

    The file is re-read by `renew()` (so an operator or a cron job can drop in a fresh card).
    A card is refused `margin` before it expires, so it cannot lapse while a call is under way.
    """

    def __init__(self, path: Path | str, *, margin: timedelta = timedelta(seconds=30)) -> None:
        self.path = Path(path)
        self.margin = margin
        self._lock = threading.Lock()
        self._card: bytes | None = None
        self._until: datetime | None = None

    def __repr__(self) -> str:  # never the card itself
        return f"FileIdCard({str(self.path)!r}, not_on_or_after={self._until})"

    @property
    def not_on_or_after(self) -> datetime:
        with self._lock:
            return self._loaded()[1]

    def _loaded(self) -> tuple[bytes, datetime]:
        if self._card is None or self._until is None:
            self._card, self._until = self._read()
        return self._card, self._until

    def _read(self) -> tuple[bytes, datetime]:
        source = str(self.path)
        try:
            raw = self.path.read_bytes()
        except OSError as exc:
            raise IdCardError(
                f"cannot read the ID card file {source} (SORSYNC_IDCARD_FILE): {exc.strerror}"
            ) from None
        card = _strip_card(raw, source)
        return card, _not_on_or_after(card, source)

    def assertion(self) -> bytes:
        with self._lock:
            card, until = self._loaded()
            now = datetime.now(UTC)
            if now + self.margin >= until:
                when = (
                    f"expired at {until.isoformat()}"
                    if now >= until
                    else f"expires at {until.isoformat()}, too soon to use"
                )
                raise IdCardExpired(
                    f"the ID card in {self.path} {when}: put a fresh STS-issued card there"
                    " (SORSYNC_IDCARD_FILE) or configure SORSYNC_STS_URL so sorsync renews"
                    " cards itself"
                )
            return card

    def renew(self) -> None:
        with self._lock:
            self._card, self._until = self._read()
