"""DGWS enforcement for the simulator: check a request's security header the way NSP does.

Order (docs/reference/krs-protocol.md §3.5 steps 1 and 3, faults as §5.3/§5.1):

1. `wsse:Security/wsu:Timestamp/wsu:Created` present, exactly `YYYY-MM-DDTHH:MM:SSZ`,
   `medcom:Header/Linking/MessageID` non-empty (FlowID non-empty if present)
                                                                  → processing_problem
2. an ID card (`wsse:Security/saml:Assertion`) with well-formed Conditions → processing_problem
3. the card is valid now (checked before the level)               → expired_idcard
4. `sosi:AuthenticationLevel` is 3                                → security_level_failed
5. every `ds:Signature` in the message verifies and is made by a trusted STS certificate, and
   the card carries one                                           → invalid_signature
6. `medcom:CareProviderID` has NameFormat `medcom:cvrnumber` and is a CVR → plain S:Server fault
7. the CVR holds the permission for exactly `register/datatype/vN`
                                                → ReplicationFault urn:stamdata:unauthorized-access

The hook returns None when the request may proceed, else the complete fault answer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Set
from datetime import UTC, datetime

from cryptography import x509
from lxml import etree

from sorsync.dgws import idcard, xmldsig
from sorsync.krs.wire import NS_DS, NS_MEDCOM, NS_SAML, NS_SOAP, NS_WSSE, NS_WSU
from sorsync.logs import get_logger
from sorsync.simulator.render import SoapFaultSpec, dgws_fault, replication_fault, server_fault

UNAUTHORIZED = "urn:stamdata:unauthorized-access"

log = get_logger(__name__)


def _q(ns: str, name: str) -> str:
    return f"{{{ns}}}{name}"


class _Reject(Exception):
    def __init__(self, fault: SoapFaultSpec, code: str, reason: str) -> None:
        super().__init__(reason)
        self.fault = fault
        self.code = code


class Enforcer:
    """The enforcement hook (`enforce(envelope, raw, view)`); see the module docstring.

    `permissions` maps a CVR to the views it may read (`sor/sygehus/v1`); the mapping is read
    on every call, so a test may change it while the simulator runs. `rejections` records
    (code, reason) of every refusal for tests and the simulator's log.
    """

    def __init__(
        self,
        trusted_sts_certs: Iterable[x509.Certificate],
        permissions: Mapping[str, Set[str]],
        *,
        now: Callable[[], datetime] | None = None,
        check_signatures: bool = True,
    ) -> None:
        self.trusted = tuple(trusted_sts_certs)
        self.permissions = permissions
        self.check_signatures = check_signatures
        self._now = now or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()
        self.rejections: list[tuple[str, str]] = []

    def __call__(self, envelope: etree._Element, raw: bytes, view: str) -> SoapFaultSpec | None:
        try:
            self._check(envelope, view)
        except _Reject as exc:
            with self._lock:
                self.rejections.append((exc.code, str(exc)))
            log.info("dgws_rejected", code=exc.code, reason=str(exc), view=view)
            return exc.fault
        return None

    def _problem(self, message: str) -> _Reject:
        now = self._now()
        fault = dgws_fault("processing_problem", f"An exception was caught: {message}", now=now)
        return _Reject(fault, "processing_problem", message)

    def _check(self, envelope: etree._Element, view: str) -> None:
        now = self._now()
        header = envelope.find(_q(NS_SOAP, "Header"))
        if header is None:
            raise self._problem("the message has no soapenv:Header")
        security = header.find(_q(NS_WSSE, "Security"))
        if security is None:
            raise self._problem("the message has no wsse:Security header")
        created = security.find(f"{_q(NS_WSU, 'Timestamp')}/{_q(NS_WSU, 'Created')}")
        if created is None:
            raise self._problem("wsse:Security has no wsu:Timestamp/wsu:Created")
        try:
            idcard.parse_time(created.text, "wsu:Created")
        except idcard.IdCardError as exc:
            raise self._problem(str(exc)) from None
        linking = header.find(f"{_q(NS_MEDCOM, 'Header')}/{_q(NS_MEDCOM, 'Linking')}")
        if linking is None:
            raise self._problem("the message has no medcom:Header/medcom:Linking")
        message_id = (linking.findtext(_q(NS_MEDCOM, "MessageID")) or "").strip()
        flow = linking.find(_q(NS_MEDCOM, "FlowID"))
        if not message_id:
            raise self._problem("medcom:MessageID is missing or empty")
        if flow is not None and not (flow.text or "").strip():
            raise self._problem("medcom:FlowID is present but empty")

        card = security.find(_q(NS_SAML, "Assertion"))
        if card is None:
            raise self._problem("the message carries no ID card (wsse:Security/saml:Assertion)")
        try:
            facts = idcard.parse_idcard(card)
        except idcard.IdCardError as exc:
            raise self._problem(str(exc)) from None

        if not facts.valid_at(now):
            reason = (
                f"the ID card is valid from {idcard.format_time(facts.not_before)} to "
                f"{idcard.format_time(facts.not_on_or_after)}, not at {idcard.format_time(now)}"
            )
            raise _Reject(dgws_fault("expired_idcard", now=now), "expired_idcard", reason)

        if facts.level != 3:
            raise _Reject(
                dgws_fault("security_level_failed", now=now),
                "security_level_failed",
                f"authentication level {facts.level}, only 3 is accepted",
            )

        if self.check_signatures:
            self._check_signatures(envelope, card, flow, message_id)

        if facts.cvr_name_format != idcard.CVR_FORMAT or not idcard.is_cvr(facts.cvr):
            # NSP's provisioning code throws here; JAX-WS turns that into a plain fault
            # (docs/reference/krs-protocol.md §5.2).
            message = "The CareProviderID of the ID card is not a CVR number (medcom:cvrnumber)."
            raise _Reject(server_fault(message), "S:Server", message)
        assert facts.cvr is not None
        allowed = self.permissions.get(facts.cvr, frozenset())
        if view not in allowed:
            raise _Reject(
                replication_fault(UNAUTHORIZED),
                UNAUTHORIZED,
                f"CVR {facts.cvr} has no permission for {view}",
            )

    def _check_signatures(
        self,
        envelope: etree._Element,
        card: etree._Element,
        flow: etree._Element | None,
        message_id: str,
    ) -> None:
        now = self._now()

        def reject(reason: str) -> _Reject:
            # SEAL echoes the request's FlowID and MessageID for this fault only.
            fault = dgws_fault(
                "invalid_signature",
                flow_id=(flow.text or "").strip() if flow is not None else None,
                in_response_to=message_id,
                now=now,
            )
            return _Reject(fault, "invalid_signature", reason)

        if card.find(_q(NS_DS, "Signature")) is None:
            raise reject("the level-3 ID card is not signed")
        for signature in envelope.iter(_q(NS_DS, "Signature")):
            try:
                xmldsig.verify_signature(signature, self.trusted)
            except xmldsig.SignatureError as exc:
                raise reject(str(exc)) from None


def make_enforcer(
    trusted_sts_certs: Iterable[x509.Certificate],
    permissions: Mapping[str, Set[str]],
    now: Callable[[], datetime] | None = None,
    *,
    check_signatures: bool = True,
) -> Enforcer:
    """The simulator's DGWS enforcement hook (see `Enforcer`).

    `check_signatures=False` keeps every other check; it exists for replaying captured requests
    whose signing STS the simulator cannot trust (and whose bytes were re-indented).
    """
    return Enforcer(trusted_sts_certs, permissions, now=now, check_signatures=check_signatures)
