"""Throw-away system certificates for tests and demos (never for NSP: those come from a CA).

`make_system_certificate()` makes an RSA-2048 key and a self-signed certificate shaped like a
Danish FOCES/VOCES system certificate (subject serialNumber `CVR:<cvr>-UID:<n>`);
`write_pkcs12()` stores them password-protected, as an operator would receive them.
"""

from __future__ import annotations

import os
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, pkcs12
from cryptography.x509.oid import NameOID


def make_system_certificate(
    *,
    cvr: str = "12345678",
    common_name: str = "sorsync test",
    organisation: str = "Sorsync Test ApS",
    valid_from: datetime | None = None,
    valid_for: timedelta = timedelta(days=365),
) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    start = valid_from or (datetime.now(UTC) - timedelta(hours=1))
    uid = secrets.randbelow(10**13)
    return self_signed(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "DK"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"{organisation} // CVR:{cvr}"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, f"CVR:{cvr}-UID:{uid}"),
        ],
        not_before=start,
        not_after=start + valid_for,
    )


def self_signed(
    name: list[x509.NameAttribute[str]], *, not_before: datetime, not_after: datetime
) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    """A fresh RSA-2048 key and a self-signed end-entity certificate for it."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name(name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def write_pkcs12(
    path: Path,
    key: rsa.RSAPrivateKey,
    cert: x509.Certificate,
    password: str,
    *,
    mode: int = 0o600,
) -> Path:
    """Write key + certificate as a password-protected PKCS#12 file with the given mode."""
    data = pkcs12.serialize_key_and_certificates(
        b"sorsync", key, cert, None, BestAvailableEncryption(password.encode("utf-8"))
    )
    path.write_bytes(data)
    os.chmod(path, mode)
    return path


def krs_request_envelope(
    card: bytes | None,
    *,
    view: tuple[str, str, int] = ("sor", "sygehus", 1),
    created: str = "",
    message_id: str = "bWVzc2FnZS0x",
    flow_id: str | None = None,
    offset: str = "0" * 20,
    max_records: int = 10,
) -> bytes:
    """A KRS `replicate` request with `card` spliced in byte for byte
    (docs/reference/krs-protocol.md §3.6).

    For tests of the enforcement; the KRS client builds its own envelopes. `created` defaults
    to now in the DGWS format.
    """
    from sorsync.dgws.idcard import format_time
    from sorsync.krs.wire import NS_KRS, NS_MEDCOM, NS_SOAP, NS_WSSE, NS_WSU

    register, datatype, version = view
    stamp = created or format_time(datetime.now(UTC))
    flow = f"<medcom:FlowID>{flow_id}</medcom:FlowID>" if flow_id is not None else ""
    head = (
        f'<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="{NS_SOAP}">'
        f'<soapenv:Header><wsse:Security xmlns:wsse="{NS_WSSE}" xmlns:wsu="{NS_WSU}">'
        f"<wsu:Timestamp><wsu:Created>{stamp}</wsu:Created></wsu:Timestamp>"
    ).encode()
    tail = (
        f'</wsse:Security><medcom:Header xmlns:medcom="{NS_MEDCOM}">'
        "<medcom:SecurityLevel>3</medcom:SecurityLevel>"
        f"<medcom:Linking>{flow}<medcom:MessageID>{message_id}</medcom:MessageID></medcom:Linking>"
        "<medcom:RequireNonRepudiationReceipt>no</medcom:RequireNonRepudiationReceipt>"
        "</medcom:Header></soapenv:Header><soapenv:Body>"
        f'<krs:ReplicationRequest xmlns:krs="{NS_KRS}"><register>{register}</register>'
        f"<datatype>{datatype}</datatype><version>{version}</version><offset>{offset}</offset>"
        f"<maxRecords>{max_records}</maxRecords></krs:ReplicationRequest></soapenv:Body>"
        "</soapenv:Envelope>"
    ).encode()
    return head + (card or b"") + tail
