"""Mode 2: obtain (and renew) STS-signed SOSI ID cards with the system's own certificate.

Flow (docs/reference/krs-protocol.md §3.7): build a system ID card, sign it with the FOCES/VOCES
key from the PKCS#12 file, POST it to the STS in a WS-Trust `RequestSecurityToken`, keep the
STS-signed card from the answer and hand it to the KRS client verbatim until shortly before it
expires.
"""

from __future__ import annotations

import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import requests
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from lxml import etree

from sorsync.config import ConfigError
from sorsync.dgws import idcard, xmldsig
from sorsync.dgws.errors import StsError
from sorsync.krs.errors import TRANSIENT_HTTP_STATUS
from sorsync.krs.wire import NS_SAML, NS_SOAP, NS_WSSE, NS_WST, NS_WSU
from sorsync.logs import get_logger

STS_SERVICE_PATH = "/sts/services/NewSecurityTokenService"
STS_SOAP_ACTION = '"Issue"'
WST_ISSUE = "http://schemas.xmlsoap.org/ws/2005/02/trust/Issue"
SAML_TOKEN_TYPE = "urn:oasis:names:tc:SAML:2.0:assertion:"  # noqa: S105 - a URN
#: Fetch a new card this long before the current one expires (or at 90 % of a short card's life).
RENEW_MARGIN = timedelta(minutes=5)

log = get_logger(__name__)
_warned_paths: set[str] = set()
_warned_lock = threading.Lock()


def _shown(url: str) -> str:
    """The URL without any user:password part, for messages and logs."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def sts_endpoint(url: str) -> str:
    """The STS service URL: a bare base URL gets NSP's `/sts/services/NewSecurityTokenService`."""
    if urlsplit(url).path in ("", "/"):
        return url.rstrip("/") + STS_SERVICE_PATH
    return url


@dataclass(frozen=True)
class SystemCredentials:
    """The system certificate and its private key (never logged; no repr of the key)."""

    key: rsa.RSAPrivateKey
    cert: x509.Certificate

    def __repr__(self) -> str:
        return f"SystemCredentials(subject={self.cert.subject.rfc4514_string()!r})"


def _warn_if_exposed(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & 0o077:
        with _warned_lock:
            if str(path) in _warned_paths:
                return
            _warned_paths.add(str(path))
        log.warning(
            "pkcs12_file_readable_by_others",
            path=str(path),
            mode=stat.filemode(mode),
            advice=f"chmod 600 {path}",
        )


def load_pkcs12(path: Path, password: str | bytes | None) -> SystemCredentials:
    """Load the RSA key and certificate from a PKCS#12 file; ConfigError if that fails."""
    _warn_if_exposed(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"invalid configuration: SORSYNC_CERT_FILE={path}: cannot be read ({exc.strerror})"
        ) from None
    secret = password.encode("utf-8") if isinstance(password, str) else password
    try:
        key, cert, _ = pkcs12.load_key_and_certificates(data, secret or None)
    except (ValueError, TypeError):
        raise ConfigError(
            f"invalid configuration: SORSYNC_CERT_FILE={path}: cannot be opened — "
            "wrong SORSYNC_CERT_PASSWORD, or not a PKCS#12 (.p12/.pfx) file"
        ) from None
    if cert is None or not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError(
            f"invalid configuration: SORSYNC_CERT_FILE={path}: must hold an RSA private key "
            "and its certificate (the FOCES/VOCES system certificate)"
        )
    now = datetime.now(UTC)
    if not cert.not_valid_before_utc <= now < cert.not_valid_after_utc:
        raise ConfigError(
            f"invalid configuration: SORSYNC_CERT_FILE={path}: the certificate is valid from "
            f"{cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d}, "
            "not now; renew it with the certificate issuer"
        )
    return SystemCredentials(key=key, cert=cert)


def request_envelope(signed_card: etree._Element, *, now: datetime | None = None) -> bytes:
    """The WS-Trust `RequestSecurityToken` SOAP envelope carrying a self-signed card."""
    nsmap = {"soapenv": NS_SOAP, "wsse": NS_WSSE, "wsu": NS_WSU, "wst": NS_WST}
    envelope = etree.Element(f"{{{NS_SOAP}}}Envelope", nsmap=nsmap)
    header = etree.SubElement(envelope, f"{{{NS_SOAP}}}Header")
    security = etree.SubElement(header, f"{{{NS_WSSE}}}Security")
    timestamp = etree.SubElement(security, f"{{{NS_WSU}}}Timestamp")
    created = etree.SubElement(timestamp, f"{{{NS_WSU}}}Created")
    created.text = idcard.format_time(now or datetime.now(UTC))
    body = etree.SubElement(envelope, f"{{{NS_SOAP}}}Body")
    rst = etree.SubElement(body, f"{{{NS_WST}}}RequestSecurityToken")
    rst.set("Context", "www.sosi.dk")
    etree.SubElement(rst, f"{{{NS_WST}}}TokenType").text = SAML_TOKEN_TYPE
    etree.SubElement(rst, f"{{{NS_WST}}}RequestType").text = WST_ISSUE
    claims = etree.SubElement(rst, f"{{{NS_WST}}}Claims")
    claims.append(signed_card)  # moved as is: its canonical form (and signature) is unchanged
    return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")


def _fault_text(root: etree._Element) -> str | None:
    fault = root.find(f"{{{NS_SOAP}}}Body/{{{NS_SOAP}}}Fault")
    if fault is None:
        return None
    text = (fault.findtext("faultstring") or "").strip()
    return text or "(no faultstring)"


def _is_soap_fault(data: bytes) -> bool:
    try:
        return _fault_text(idcard.parse_xml(data)) is not None
    except (etree.XMLSyntaxError, idcard.IdCardError):
        return False


def extract_card(response: bytes) -> bytes:
    """The STS-signed card (element with id="IDCard") from an STS answer, serialised once.

    lxml writes the subtree as parsed — same text, same prefixes, plus the namespace
    declarations it inherited — so its exclusive canonical form, which the STS signed, is
    unchanged. The bytes are never touched again.
    """
    root = idcard.parse_xml(response)
    fault = _fault_text(root)
    if fault is not None:
        raise StsError(f"the STS refused to issue an ID card: {fault[:300]}")
    found = root.xpath("//*[@id=$v]", v=idcard.IDCARD_ID)
    if not isinstance(found, list) or len(found) != 1 or not isinstance(found[0], etree._Element):
        raise StsError('the STS answer does not hold exactly one ID card (id="IDCard")')
    card = found[0]
    if card.tag != f"{{{NS_SAML}}}Assertion":
        raise StsError('the STS answer\'s element with id="IDCard" is not a saml:Assertion')
    return etree.tostring(card, with_tail=False)


@dataclass(frozen=True)
class _Cached:
    card: bytes
    facts: idcard.IdCardFacts
    refresh_at: datetime


class StsIdCardProvider:
    """SecurityProvider (mode 2): STS-signed system ID cards, cached until shortly before expiry.

    Thread-safe. `assertion()` returns the card bytes to embed verbatim in `wsse:Security`;
    `renew()` forgets the cached card (the KRS client calls it after an `expired_idcard` fault).
    """

    def __init__(
        self,
        sts_url: str,
        pkcs12_path: Path | str,
        password: str | bytes | None,
        cvr: str,
        system_name: str,
        timeout: float = 60.0,
        *,
        renew_margin: timedelta = RENEW_MARGIN,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if not idcard.is_cvr(cvr):
            raise ConfigError(f"invalid configuration: SORSYNC_CVR={cvr}: must be 8 digits")
        self.url = sts_endpoint(sts_url)
        self.shown_url = _shown(self.url)
        self.cvr = cvr
        self.system_name = system_name
        self.timeout = timeout
        self.renew_margin = renew_margin
        self._clock = clock or (lambda: datetime.now(UTC))
        self._credentials = load_pkcs12(Path(pkcs12_path), password)
        self._lock = threading.Lock()
        self._cached: _Cached | None = None
        self._session = requests.Session()
        self.fetches = 0  # how many cards were obtained (for tests and status)

    def __repr__(self) -> str:
        return f"StsIdCardProvider(url={self.shown_url!r}, cvr={self.cvr!r})"

    @property
    def certificate(self) -> x509.Certificate:
        return self._credentials.cert

    def assertion(self) -> bytes:
        with self._lock:
            cached = self._cached
            if cached is None or self._clock() >= cached.refresh_at:
                cached = self._fetch()
                self._cached = cached
            return cached.card

    def renew(self) -> None:
        with self._lock:
            self._cached = None

    def close(self) -> None:
        self._session.close()

    def _fetch(self) -> _Cached:
        now = self._clock()
        card = idcard.build_request_idcard(
            cert=self._credentials.cert, cvr=self.cvr, system_name=self.system_name, now=now
        )
        xmldsig.sign(card, self._credentials.key, self._credentials.cert)
        body = request_envelope(card, now=now)
        try:
            response = self._session.post(
                self.url,
                data=body,
                headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": STS_SOAP_ACTION},
                timeout=self.timeout,
            )
        except requests.Timeout:
            raise StsError(
                f"the STS at {self.shown_url} did not answer within {self.timeout:g} s",
                transient=True,
            ) from None
        except requests.RequestException as exc:
            raise StsError(
                f"could not reach the STS at {self.shown_url} ({type(exc).__name__}); "
                "check SORSYNC_STS_URL and the network",
                transient=True,
            ) from None
        try:
            if response.status_code != 200 and not _is_soap_fault(response.content):
                raise StsError(
                    f"the STS at {self.shown_url} answered HTTP {response.status_code}",
                    transient=response.status_code in TRANSIENT_HTTP_STATUS,
                )
            card_bytes = extract_card(response.content)
            received = idcard.parse_xml(card_bytes)
            facts = idcard.parse_idcard(received)
        except etree.XMLSyntaxError:
            raise StsError(
                f"the STS at {self.shown_url} answered with something that is not XML"
            ) from None
        except idcard.IdCardError as exc:
            raise StsError(f"the STS answered with an unusable ID card: {exc}") from None
        try:
            # Integrity of what we will send: proves the bytes are as the STS signed them.
            # (Whether the STS is trusted is for NSP to decide, not us.)
            xmldsig.verify(received, (), trust_embedded=True)
        except xmldsig.MalformedSignature as exc:
            log.warning("sts_card_signature_not_checked", reason=str(exc))
        except xmldsig.SignatureError as exc:
            raise StsError(f"the ID card from the STS does not verify: {exc}") from None
        self.fetches += 1
        if not facts.valid_at(self._clock()):
            log.warning(
                "idcard_not_valid_on_this_clock",
                sts=self.shown_url,
                not_before=idcard.format_time(facts.not_before),
                not_on_or_after=idcard.format_time(facts.not_on_or_after),
                advice="check this machine's clock (NTP)",
            )
        lifetime = facts.not_on_or_after - facts.not_before
        margin = min(self.renew_margin, lifetime / 10)
        log.info(
            "idcard_obtained",
            sts=self.shown_url,
            issuer=facts.issuer,
            level=facts.level,
            valid_until=idcard.format_time(facts.not_on_or_after),
        )
        return _Cached(card=card_bytes, facts=facts, refresh_at=facts.not_on_or_after - margin)
