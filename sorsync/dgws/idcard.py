"""SOSI system ID cards (SAML 2.0 assertions): build an unsigned card, read a card's facts.

Layout from docs/reference/krs-protocol.md §3.2 and the real request captured against NSP test2 in
2013 (bachpedersen/batch_copy_demo `examples/request_raw_ddv.xml`). Element order matters: SEAL
validates the card against its schema.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from lxml import etree

from sorsync.krs.wire import NS_DS, NS_SAML
from sorsync.xmlsafe import safe_parser

IDCARD_ID = "IDCard"
CVR_FORMAT = "medcom:cvrnumber"
HOLDER_OF_KEY = "urn:oasis:names:tc:SAML:2.0:cm:holder-of-key"
IDCARD_VERSION = "1.0.1"
#: A client-built card is dated this far back so a slightly fast STS clock still accepts it.
CLOCK_SKEW = timedelta(minutes=5)

_TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
_CVR_RE = re.compile(r"^\d{8}$")


def _saml(name: str) -> str:
    return f"{{{NS_SAML}}}{name}"


class IdCardError(ValueError):
    """A card lacks a required part or has one in the wrong format (message names which)."""


def format_time(moment: datetime) -> str:
    """`YYYY-MM-DDTHH:MM:SSZ` in UTC — the only format SEAL accepts (no fractions, literal Z)."""
    if moment.tzinfo is None:
        raise ValueError("a timezone-aware datetime is needed")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None, what: str) -> datetime:
    """Parse a SEAL timestamp strictly; raise IdCardError naming `what` otherwise."""
    if text is None or not _TIME_RE.match(text):
        raise IdCardError(f"{what} {text!r} is not in the format YYYY-MM-DDTHH:MM:SSZ")
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise IdCardError(f"{what} {text!r} is not a valid date and time") from None


def cert_hash(cert: x509.Certificate) -> str:
    """`sosi:OCESCertHash`: base64 of the SHA-1 of the DER certificate."""
    der = cert.public_bytes(serialization.Encoding.DER)
    return base64.b64encode(hashlib.sha1(der).digest()).decode("ascii")  # noqa: S324


def organisation_name(cert: x509.Certificate) -> str | None:
    """The organisation of an OCES certificate without its ` // CVR:…` suffix, if any."""
    names = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    if not names:
        return None
    value = names[0].value
    text = value if isinstance(value, str) else value.decode("utf-8", "replace")
    return text.split(" // ")[0].strip() or None


def cert_cvr(cert: x509.Certificate) -> str | None:
    """The CVR in an OCES certificate's subject serialNumber (`CVR:12345678-UID:…`), if any."""
    for attribute in cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER):
        value = attribute.value
        text = value if isinstance(value, str) else value.decode("utf-8", "replace")
        match = re.match(r"^CVR:(\d{8})-", text)
        if match:
            return match.group(1)
    return None


def new_card_id() -> str:
    """A fresh `sosi:IDCardID` (16 random bytes, base64 — the shape STS cards carry)."""
    return base64.b64encode(secrets.token_bytes(16)).decode("ascii")


def _element(parent: etree._Element, tag: str, text: str | None = None) -> etree._Element:
    child = etree.SubElement(parent, tag)
    if text is not None:
        child.text = text
    return child


def _attribute(
    statement: etree._Element, name: str, value: str, name_format: str | None = None
) -> None:
    attribute = _element(statement, _saml("Attribute"))
    attribute.set("Name", name)
    if name_format is not None:
        attribute.set("NameFormat", name_format)
    _element(attribute, _saml("AttributeValue"), value)


def build_system_idcard(
    *,
    cvr: str,
    system_name: str,
    care_provider_name: str,
    oces_cert_hash: str,
    issuer: str,
    not_before: datetime,
    not_on_or_after: datetime,
    issue_instant: datetime | None = None,
    level: int = 3,
    card_id: str | None = None,
) -> etree._Element:
    """An unsigned SOSI system ID card, element for element as the STS issues them."""
    if not _CVR_RE.match(cvr):
        raise IdCardError(f"CVR {cvr!r} is not 8 digits")
    assertion = etree.Element(_saml("Assertion"), nsmap={"saml": NS_SAML, "ds": NS_DS})
    assertion.set("IssueInstant", format_time(issue_instant or not_before))
    assertion.set("Version", "2.0")
    assertion.set("id", IDCARD_ID)
    _element(assertion, _saml("Issuer"), issuer)
    subject = _element(assertion, _saml("Subject"))
    _element(subject, _saml("NameID"), cvr).set("Format", CVR_FORMAT)
    confirmation = _element(subject, _saml("SubjectConfirmation"))
    _element(confirmation, _saml("ConfirmationMethod"), HOLDER_OF_KEY)
    data = _element(confirmation, _saml("SubjectConfirmationData"))
    _element(_element(data, f"{{{NS_DS}}}KeyInfo"), f"{{{NS_DS}}}KeyName", "OCESSignature")
    conditions = _element(assertion, _saml("Conditions"))
    conditions.set("NotBefore", format_time(not_before))
    conditions.set("NotOnOrAfter", format_time(not_on_or_after))
    card_data = _element(assertion, _saml("AttributeStatement"))
    card_data.set("id", "IDCardData")
    _attribute(card_data, "sosi:IDCardID", card_id or new_card_id())
    _attribute(card_data, "sosi:IDCardVersion", IDCARD_VERSION)
    _attribute(card_data, "sosi:IDCardType", "system")
    _attribute(card_data, "sosi:AuthenticationLevel", str(level))
    _attribute(card_data, "sosi:OCESCertHash", oces_cert_hash)
    system_log = _element(assertion, _saml("AttributeStatement"))
    system_log.set("id", "SystemLog")
    _attribute(system_log, "medcom:ITSystemName", system_name)
    _attribute(system_log, "medcom:CareProviderID", cvr, CVR_FORMAT)
    _attribute(system_log, "medcom:CareProviderName", care_provider_name)
    return assertion


def build_request_idcard(
    *,
    cert: x509.Certificate,
    cvr: str,
    system_name: str,
    now: datetime | None = None,
    validity: timedelta = timedelta(hours=24),
) -> etree._Element:
    """The unsigned card a system sends to the STS (to be self-signed with its own key)."""
    moment = (now or datetime.now(UTC)).replace(microsecond=0)
    return build_system_idcard(
        cvr=cvr,
        system_name=system_name,
        care_provider_name=organisation_name(cert) or system_name,
        oces_cert_hash=cert_hash(cert),
        issuer=system_name,
        issue_instant=moment,
        not_before=moment - CLOCK_SKEW,
        not_on_or_after=moment + validity,
    )


@dataclass(frozen=True)
class IdCardFacts:
    """What a card claims. Read without verifying anything: check the signature separately."""

    card_id: str | None
    issuer: str | None
    card_type: str | None
    level: int | None
    cvr: str | None
    cvr_name_format: str | None
    subject_cvr: str | None
    system_name: str | None
    care_provider_name: str | None
    cert_hash: str | None
    issue_instant: str | None
    not_before: datetime
    not_on_or_after: datetime

    def valid_at(self, moment: datetime) -> bool:
        return self.not_before <= moment < self.not_on_or_after


def _attributes(assertion: etree._Element, statement_id: str) -> dict[str, etree._Element]:
    found: dict[str, etree._Element] = {}
    for statement in assertion.findall(_saml("AttributeStatement")):
        if statement.get("id") != statement_id:
            continue
        for attribute in statement.findall(_saml("Attribute")):
            name = attribute.get("Name")
            if name and name not in found:
                found[name] = attribute
    return found


def _value(attribute: etree._Element | None) -> str | None:
    if attribute is None:
        return None
    text = attribute.findtext(_saml("AttributeValue"))
    return text.strip() if text is not None else None


def parse_idcard(assertion: etree._Element) -> IdCardFacts:
    """Read a card's facts. Raises IdCardError when it is not a SOSI card or its times are bad."""
    if assertion.tag != _saml("Assertion"):
        raise IdCardError("the ID card is not a saml:Assertion")
    conditions = assertion.find(_saml("Conditions"))
    if conditions is None:
        raise IdCardError("the ID card has no saml:Conditions")
    not_before = parse_time(conditions.get("NotBefore"), "Conditions/@NotBefore")
    not_on_or_after = parse_time(conditions.get("NotOnOrAfter"), "Conditions/@NotOnOrAfter")
    card = _attributes(assertion, "IDCardData")
    log = _attributes(assertion, "SystemLog")
    level_text = _value(card.get("sosi:AuthenticationLevel"))
    level: int | None = None
    if level_text is not None:
        if not level_text.isdigit():
            raise IdCardError(f"AuthenticationLevel {level_text!r} is not a number")
        level = int(level_text)
    provider = log.get("medcom:CareProviderID")
    subject_cvr = assertion.findtext(f"{_saml('Subject')}/{_saml('NameID')}")
    return IdCardFacts(
        card_id=_value(card.get("sosi:IDCardID")),
        issuer=assertion.findtext(_saml("Issuer")),
        card_type=_value(card.get("sosi:IDCardType")),
        level=level,
        cvr=_value(provider),
        cvr_name_format=provider.get("NameFormat") if provider is not None else None,
        subject_cvr=subject_cvr.strip() if subject_cvr is not None else None,
        system_name=_value(log.get("medcom:ITSystemName")),
        care_provider_name=_value(log.get("medcom:CareProviderName")),
        cert_hash=_value(card.get("sosi:OCESCertHash")),
        issue_instant=assertion.get("IssueInstant"),
        not_before=not_before,
        not_on_or_after=not_on_or_after,
    )


def is_cvr(value: str | None) -> bool:
    return value is not None and bool(_CVR_RE.match(value))


def parse_xml(data: bytes) -> etree._Element:
    """Parse untrusted XML; a DOCTYPE is rejected (it has no place in SOAP or a card)."""
    root = etree.fromstring(data, safe_parser())
    # (lxml-stubs lacks DocInfo.doctype)
    if getattr(root.getroottree().docinfo, "doctype", ""):
        raise IdCardError("XML with a DOCTYPE is not accepted")
    return root
