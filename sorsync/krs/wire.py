"""Wire constants of the KRS protocol, shared by the client and the simulator
(docs/reference/krs-protocol.md §2–§4).

Nothing here does I/O; the simulator may import this module and nothing else of the client.
"""

from __future__ import annotations

SERVICE_PATH = "/stamdata-batch-copy-ws/service/StamdataReplication"
SOAP_ACTION = '"http://nsi.dk/2011/10/21/StamdataKrs/replicate"'
MAX_RECORDS = 2000  # the server caps every page at this many records
START_TOKEN = "0" * 20

NS_SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
NS_KRS = "http://nsi.dk/2011/10/21/StamdataKrs/"
NS_ATOM = "http://www.w3.org/2005/Atom"
NS_WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
NS_WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
NS_MEDCOM = "http://www.medcom.dk/dgws/2006/04/dgws-1.0.xsd"
NS_SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
NS_DS = "http://www.w3.org/2000/09/xmldsig#"
NS_SOSI = "http://www.sosi.dk/sosi/2006/04/sosi-1.0.xsd"
NS_WST = "http://schemas.xmlsoap.org/ws/2005/02/trust"
NS_JAXWS = "http://jax-ws.dev.java.net/"

FEED_ID_PREFIX = "tag:nsi.dk,2011:"


def record_namespace(register: str) -> str:
    return f"http://nsi.dk/-/stamdata/3.0/{register}"


def feed_id(register: str, datatype: str) -> str:
    # "v1" is hard-coded by NSP's server whatever version was asked for
    # (docs/reference/krs-protocol.md §4.2).
    return f"{FEED_ID_PREFIX}{register}/{datatype}/v1"


def make_token(modified_epoch_seconds: int, pid: int) -> str:
    """`%010d%010d` of (ModifiedDate in epoch seconds, PID), as NSP writes it."""
    return f"{modified_epoch_seconds:010d}{pid:010d}"


def split_token(token: str) -> tuple[int, int]:
    """(seconds, pid) from a token; empty or short tokens are left-padded like NSP does.

    Raises ValueError when either part is not numeric.
    """
    padded = token.strip().rjust(20, "0")
    seconds, pid = padded[:10], padded[10:]
    if not (seconds.isdigit() and pid.isdigit()):
        raise ValueError(f"invalid history offset {token!r}")
    return int(seconds), int(pid)
