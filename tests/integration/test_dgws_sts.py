"""Mode 2 over real HTTP: StsIdCardProvider against the simulator's test STS on 127.0.0.1."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from lxml import etree
from structlog.testing import capture_logs

from sorsync.config import ConfigError
from sorsync.dgws import idcard, xmldsig
from sorsync.dgws.errors import StsError
from sorsync.dgws.sts import StsIdCardProvider, request_envelope, sts_endpoint
from sorsync.krs.envelope import build_envelope
from sorsync.krs.errors import KrsError
from sorsync.testing.certs import make_system_certificate, write_pkcs12
from sorsync.testing.enforce import make_enforcer
from sorsync.testing.sts import SimulatedSts, StsHandle, serve_sts_in_thread

CVR = "12345678"
PASSWORD = "correct horse battery staple"
BODY = b'<krs:ReplicationRequest xmlns:krs="http://nsi.dk/2011/10/21/StamdataKrs/"/>'


@pytest.fixture(scope="module")
def client_creds() -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    return make_system_certificate(cvr=CVR)


@pytest.fixture
def p12(tmp_path: Path, client_creds: tuple[rsa.RSAPrivateKey, x509.Certificate]) -> Path:
    return write_pkcs12(tmp_path / "system.p12", *client_creds, PASSWORD)


@pytest.fixture
def sts() -> Iterator[StsHandle]:
    handle = serve_sts_in_thread(SimulatedSts())
    try:
        yield handle
    finally:
        handle.stop()


def _provider(sts: StsHandle, p12: Path, **kwargs: object) -> StsIdCardProvider:
    options: dict[str, object] = {"cvr": CVR, "system_name": "sorsync-test", "timeout": 5.0}
    options.update(kwargs)
    return StsIdCardProvider(sts.url, p12, PASSWORD, **options)  # type: ignore[arg-type]


def test_obtains_an_sts_signed_card(
    sts: StsHandle, p12: Path, client_creds: tuple[rsa.RSAPrivateKey, x509.Certificate]
) -> None:
    provider = _provider(sts, p12)
    card = provider.assertion()
    root = idcard.parse_xml(card)
    assert xmldsig.verify(root, [sts.cert]) == sts.cert
    facts = idcard.parse_idcard(root)
    assert facts.issuer == "SORSYNC-TEST-STS"
    assert facts.level == 3
    assert facts.cvr == CVR
    assert facts.system_name == "sorsync-test"
    assert facts.cert_hash == idcard.cert_hash(client_creds[1])
    assert facts.not_on_or_after - facts.not_before == timedelta(hours=24)
    assert sts.sts.issued == 1


def test_card_is_cached_and_renew_fetches_a_new_one(sts: StsHandle, p12: Path) -> None:
    provider = _provider(sts, p12)
    first = provider.assertion()
    assert provider.assertion() is first
    assert sts.sts.issued == 1
    provider.renew()
    second = provider.assertion()
    assert sts.sts.issued == 2
    first_id = idcard.parse_idcard(idcard.parse_xml(first)).card_id
    assert idcard.parse_idcard(idcard.parse_xml(second)).card_id != first_id


def test_short_lived_cards_are_renewed_before_they_expire(sts: StsHandle, p12: Path) -> None:
    sts.sts.validity = timedelta(seconds=2)
    provider = _provider(sts, p12)
    first = provider.assertion()
    assert provider.assertion() is first  # still fresh
    facts = idcard.parse_idcard(idcard.parse_xml(first))
    # renewed at 90 % of the card's life (5 minutes before expiry for normal 24 h cards)
    wait = (facts.not_on_or_after - datetime.now(UTC)).total_seconds()
    time.sleep(max(0.0, wait - 0.1))
    second = provider.assertion()
    assert second != first
    assert sts.sts.issued == 2


def test_renewal_margin_for_day_long_cards(p12: Path) -> None:
    class Clock:
        moment = datetime.now(UTC)

        def __call__(self) -> datetime:
            return self.moment

    clock = Clock()  # shared by the STS and the client, so the client's card stays acceptable
    sts = serve_sts_in_thread(SimulatedSts(clock=clock))
    try:
        provider = _provider(sts, p12, clock=clock)
        first = provider.assertion()
        expiry = idcard.parse_idcard(idcard.parse_xml(first)).not_on_or_after
        clock.moment = expiry - timedelta(minutes=5, seconds=1)
        assert provider.assertion() is first
        clock.moment = expiry - timedelta(minutes=5)
        assert provider.assertion() is not first
        assert sts.sts.issued == 2
    finally:
        sts.stop()


def test_provider_card_passes_the_enforcer_in_the_clients_envelope(
    sts: StsHandle, p12: Path
) -> None:
    provider = _provider(sts, p12)
    raw = build_envelope(
        BODY,
        assertion=provider.assertion(),
        message_id="m-1",
        flow_id="f-1",
        created=idcard.format_time(datetime.now(UTC)),
    )
    enforcer = make_enforcer([sts.cert], {CVR: {"sor/sygehus/v1"}})
    assert enforcer(etree.fromstring(raw), raw, "sor/sygehus/v1") is None, enforcer.rejections


def test_sts_refuses_a_cvr_that_is_not_the_certificates(sts: StsHandle, p12: Path) -> None:
    provider = _provider(sts, p12, cvr="87654321")
    with pytest.raises(StsError, match="not the CVR of the certificate") as caught:
        provider.assertion()
    assert isinstance(caught.value, KrsError)
    assert not caught.value.transient
    assert sts.sts.rejected == 1


def test_sts_refuses_a_tampered_request(
    sts: StsHandle, client_creds: tuple[rsa.RSAPrivateKey, x509.Certificate]
) -> None:
    key, cert = client_creds
    card = idcard.build_request_idcard(cert=cert, cvr=CVR, system_name="sorsync")
    xmldsig.sign(card, key, cert)
    body = request_envelope(card).replace(b"sorsync<", b"evil<", 1)
    response = requests.post(sts.url, data=body, timeout=5)
    assert response.status_code == 500
    assert b"invalid_signature" in response.content
    assert b"digest mismatch" in response.content


def test_sts_refuses_a_level_1_request(
    sts: StsHandle, client_creds: tuple[rsa.RSAPrivateKey, x509.Certificate]
) -> None:
    key, cert = client_creds
    now = datetime.now(UTC).replace(microsecond=0)
    card = idcard.build_system_idcard(
        cvr=CVR,
        system_name="s",
        care_provider_name="x",
        oces_cert_hash=idcard.cert_hash(cert),
        issuer="s",
        not_before=now - timedelta(minutes=1),
        not_on_or_after=now + timedelta(hours=1),
        level=1,
    )
    xmldsig.sign(card, key, cert)
    response = requests.post(sts.url, data=request_envelope(card), timeout=5)
    assert response.status_code == 500
    assert b"security_level_failed" in response.content


def test_unreachable_sts_is_transient(p12: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    provider = StsIdCardProvider(f"http://127.0.0.1:{port}", p12, PASSWORD, CVR, "s", 2.0)
    with pytest.raises(StsError, match="could not reach the STS") as caught:
        provider.assertion()
    assert caught.value.transient


def test_wrong_path_is_a_clear_http_error(sts: StsHandle, p12: Path) -> None:
    provider = StsIdCardProvider(sts.base_url + "/nowhere", p12, PASSWORD, CVR, "s", 2.0)
    with pytest.raises(StsError, match="answered HTTP 404") as caught:
        provider.assertion()
    assert not caught.value.transient


def test_base_url_gets_the_service_path() -> None:
    assert sts_endpoint("https://sts.example:8443") == (
        "https://sts.example:8443/sts/services/NewSecurityTokenService"
    )
    assert sts_endpoint("https://sts.example/sts/services/SecurityTokenService").endswith(
        "/SecurityTokenService"
    )


def test_wrong_password_is_a_config_error_without_the_password(tmp_path: Path) -> None:
    path = write_pkcs12(tmp_path / "c.p12", *make_system_certificate(), PASSWORD)
    with pytest.raises(ConfigError, match="SORSYNC_CERT_PASSWORD") as caught:
        StsIdCardProvider("http://127.0.0.1:9", path, "not it", CVR, "s")
    assert "not it" not in str(caught.value)
    assert PASSWORD not in str(caught.value)


def test_not_a_pkcs12_file(tmp_path: Path) -> None:
    path = tmp_path / "c.p12"
    path.write_bytes(b"-----BEGIN CERTIFICATE-----\n")
    with pytest.raises(ConfigError, match="not a PKCS#12"):
        StsIdCardProvider("http://127.0.0.1:9", path, PASSWORD, CVR, "s")


def test_expired_certificate_is_a_config_error(tmp_path: Path) -> None:
    old = make_system_certificate(
        valid_from=datetime.now(UTC) - timedelta(days=400), valid_for=timedelta(days=365)
    )
    path = write_pkcs12(tmp_path / "old.p12", *old, PASSWORD)
    with pytest.raises(ConfigError, match="not now; renew it"):
        StsIdCardProvider("http://127.0.0.1:9", path, PASSWORD, CVR, "s")


def test_readable_pkcs12_warns_once(
    tmp_path: Path, client_creds: tuple[rsa.RSAPrivateKey, x509.Certificate]
) -> None:
    exposed = write_pkcs12(tmp_path / "exposed.p12", *client_creds, PASSWORD, mode=0o644)
    private = write_pkcs12(tmp_path / "private.p12", *client_creds, PASSWORD, mode=0o600)
    with capture_logs() as logs:
        StsIdCardProvider("http://127.0.0.1:9", exposed, PASSWORD, CVR, "s")
        StsIdCardProvider("http://127.0.0.1:9", exposed, PASSWORD, CVR, "s")
        StsIdCardProvider("http://127.0.0.1:9", private, PASSWORD, CVR, "s")
    warnings = [e for e in logs if e["event"] == "pkcs12_file_readable_by_others"]
    assert len(warnings) == 1
    assert warnings[0]["path"] == str(exposed)
    assert warnings[0]["advice"] == f"chmod 600 {exposed}"


def test_no_secrets_in_logs_or_repr(sts: StsHandle, p12: Path) -> None:
    with capture_logs() as logs:
        provider = _provider(sts, p12)
        card = provider.assertion()
    card_id = idcard.parse_idcard(idcard.parse_xml(card)).card_id
    assert card_id is not None
    text = repr(logs) + repr(provider)
    assert PASSWORD not in text
    assert card_id not in text
    assert "PRIVATE" not in text
    assert "idcard_obtained" in text
