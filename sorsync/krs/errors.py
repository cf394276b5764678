"""Typed errors of the KRS client (docs/reference/krs-protocol.md §5).

Every error is a `KrsError` with a message a person can act on and `.transient`: True when the
same call may well succeed if simply repeated later (network trouble, an overloaded or restarting
server), False when a person has to change something first (permissions, ID card, configuration)
or the server answers something sorsync does not understand. Messages never contain the ID card
or any other secret.
"""

from __future__ import annotations

from collections.abc import Mapping

# HTTP statuses without a usable answer that a later retry usually cures (timeout, too early,
# rate limit, server error, bad gateway, unavailable, gateway timeout): for KRS, the STS and the
# file export alike (sorsync.sync.retry).
TRANSIENT_HTTP_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class KrsError(Exception):
    """Base of everything the KRS client raises on purpose."""

    transient: bool = False

    def __init__(self, message: str, *, transient: bool | None = None) -> None:
        super().__init__(message)
        if transient is not None:
            self.transient = transient

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


# --- application faults: detail/krs:ReplicationFault (docs/reference/krs-protocol.md §5.1) ---

_REPLICATION_ADVICE: Mapping[str, tuple[str, bool]] = {
    "urn:stamdata:unauthorized-access": (
        "KRS refused datatype {key} for this CVR ({code}): ask NSP to whitelist the CVR for {key}"
        " (the CVR of the ID card; one permission per register/datatype/version). An unknown"
        " register/datatype gives the same answer, so check SORSYNC_KRS_DATATYPES too",
        False,
    ),
    "urn:stamdata:invalid-history-offset": (
        "KRS rejected the offset token {offset!r} for {key} ({code}): the stored token is"
        " corrupt; run a full sync (sorsync sync --full) to start again from token 0",
        False,
    ),
    "urn:stamdata:internal-error": (
        "KRS had an internal error serving {key} ({code}); this is usually temporary (NSP"
        " database or import running). sorsync will retry; if it persists, report it to NSP"
        " support with the time and the FlowID",
        True,
    ),
    "urn:stamdata:unknown-view": (
        "KRS does not know datatype {key} ({code}): check SORSYNC_KRS_DATATYPES against the"
        " datatypes NSP publishes",
        False,
    ),
    "urn:stamdata:io-error": (
        "KRS failed while writing the answer for {key} ({code}); usually temporary, sorsync"
        " will retry",
        True,
    ),
}


class ReplicationFault(KrsError):
    """An application fault of the replicate operation, code = `urn:stamdata:*`."""

    def __init__(
        self, code: str, *, key: str = "?", offset: str = "", faultstring: str = ""
    ) -> None:
        self.code = code
        self.faultstring = faultstring
        advice = _REPLICATION_ADVICE.get(code)
        if advice is None:
            text = (
                f"KRS answered {key} with fault {code}"
                + (f" ({faultstring[:300]})" if faultstring else "")
                + ": not a code sorsync knows; report it with the time and the FlowID"
            )
            transient = False
        else:
            template, transient = advice
            text = template.format(key=key, code=code, offset=offset)
        super().__init__(text, transient=transient)


# --- DGWS faults: detail/medcom:FaultCode (docs/reference/krs-protocol.md §5.3) --------------

_DGWS_ADVICE: Mapping[str, str] = {
    "expired_idcard": (
        "the ID card has expired or is not valid yet: get a fresh card from the STS (or a new"
        " SORSYNC_IDCARD_FILE), and check this machine's clock (NTP)"
    ),
    "security_level_failed": (
        "KRS only accepts system ID cards of authentication level 3 (VOCES/FOCES): check the"
        " card's sosi:AuthenticationLevel and the certificate it was issued for"
    ),
    "invalid_signature": (
        "KRS does not trust the ID card's signature: the card must be issued and signed by the"
        " SOSI STS of the federation this KRS uses (test vs production), sent unmodified;"
        " check SORSYNC_STS_URL / SORSYNC_IDCARD_FILE and the certificate"
    ),
    "processing_problem": (
        "KRS could not process the security headers: check the machine's clock (the"
        " timestamp must be current UTC), that an ID card is configured and that it is"
        " complete"
    ),
    "invalid_idcard": "KRS rejected the ID card as invalid: get a fresh card from the STS",
    "invalid_certificate": (
        "KRS rejected the certificate behind the ID card (revoked or expired?): renew the"
        " VOCES/FOCES certificate in SORSYNC_CERT_FILE"
    ),
    "not_authorized": "KRS refused the caller: ask NSP whether the CVR is authorised",
    "missing_required_header": "the request lacked a DGWS header: a bug in sorsync, report it",
    "syntax_error": "KRS found a syntax error in the request: a bug in sorsync, report it",
}


class DgwsFault(KrsError):
    """A DGWS/SOSI security fault (`medcom:FaultCode`), raised before KRS looks at the body.

    Not transient: the client has already renewed the card once for `expired_idcard`.
    """

    def __init__(self, code: str, *, key: str = "?", faultstring: str = "") -> None:
        self.code = code
        self.faultstring = faultstring
        advice = _DGWS_ADVICE.get(code, "report it to NSP support with the time and the FlowID")
        super().__init__(
            f"KRS rejected the request for {key} with DGWS fault {code}: {advice}",
            transient=False,
        )


class SoapFault(KrsError):
    """A plain SOAP fault without a KRS or DGWS code (schema validation, server exception)."""

    def __init__(self, faultcode: str, faultstring: str, *, key: str = "?") -> None:
        self.faultcode = faultcode
        self.faultstring = faultstring
        if faultcode.rpartition(":")[2] == "Client":
            advice = (
                "the server rejected the request itself (schema error) — sorsync and this"
                " server disagree on the protocol version; report it with the server's text"
            )
        else:
            advice = (
                "the server failed to handle the request; if it repeats, report it to NSP"
                " with the time and the server's text"
            )
        super().__init__(
            f"KRS answered {key} with SOAP fault {faultcode}: {faultstring[:300]!r}: {advice}",
            transient=False,
        )


class TransportError(KrsError):
    """No usable SOAP answer: connection refused/reset, timeout, or an HTTP error status."""

    def __init__(self, message: str, *, transient: bool = True, status: int | None = None):
        self.status = status
        super().__init__(message, transient=transient)


class MalformedResponse(KrsError):
    """The server's answer is not what the protocol says.

    Chosen: transient only when the body is not (complete) XML — a body cut short by a dropped
    connection or a proxy's error page, which a retry usually cures. A well-formed answer with the
    wrong structure (wrong namespace, tokens out of order, > 2000 records, a DTD) is not
    transient: asking again gives the same answer, so a person has to look.
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message, transient=transient)


class IdCardExpired(KrsError):
    """The configured ID card is no longer valid; sorsync never sends an expired card."""

    transient = False


class IdCardError(KrsError):
    """The configured ID card cannot be read or is not a SOSI ID card."""

    transient = False
