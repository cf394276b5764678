"""security_from_settings: which ID card source the configuration selects."""

from __future__ import annotations

from pathlib import Path

import pytest

from sorsync.config import ConfigError, Settings, load_settings
from sorsync.dgws import security_from_settings
from sorsync.dgws.sts import StsIdCardProvider
from sorsync.krs.envelope import FileIdCard
from sorsync.testing.certs import make_system_certificate, write_pkcs12

PASSWORD = "pkcs12 password"
VARIABLES = ("IDCARD_FILE", "STS_URL", "CERT_FILE", "CERT_PASSWORD", "CVR", "SYSTEM_NAME")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(f"SORSYNC_{name}", raising=False)


@pytest.fixture(scope="module")
def p12(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dgws") / "system.p12"
    return write_pkcs12(path, *make_system_certificate(cvr="12345678"), PASSWORD)


def _settings(**values: object) -> Settings:
    return load_settings(_env_file=None, **values)  # no .env from the working directory


def test_nothing_configured_means_no_card() -> None:
    assert security_from_settings(_settings()) is None


def test_mode_1_idcard_file(tmp_path: Path) -> None:
    card = tmp_path / "card.xml"
    card.write_text("<saml:Assertion/>")
    provider = security_from_settings(_settings(idcard_file=card))
    assert isinstance(provider, FileIdCard)


def test_mode_2_sts(p12: Path) -> None:
    provider = security_from_settings(
        _settings(
            sts_url="https://sts.example:8443",
            cert_file=p12,
            cert_password=PASSWORD,
            cvr="12345678",
            system_name="sorsync",
            krs_timeout=12,
        )
    )
    assert isinstance(provider, StsIdCardProvider)
    assert provider.url == "https://sts.example:8443/sts/services/NewSecurityTokenService"
    assert provider.timeout == 12
    assert PASSWORD not in repr(provider)


def test_both_modes_is_an_error(tmp_path: Path) -> None:
    card = tmp_path / "card.xml"
    card.write_text("<x/>")
    with pytest.raises(ConfigError, match="SORSYNC_IDCARD_FILE and SORSYNC_STS_URL are both set"):
        security_from_settings(_settings(idcard_file=card, sts_url="https://sts.example"))


def test_sts_without_the_rest_names_every_missing_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        security_from_settings(_settings(sts_url="https://sts.example"))
    message = str(caught.value)
    for name in (
        "SORSYNC_CERT_FILE",
        "SORSYNC_CERT_PASSWORD",
        "SORSYNC_CVR",
        "SORSYNC_SYSTEM_NAME",
    ):
        assert name in message


def test_sts_missing_one_variable(p12: Path) -> None:
    with pytest.raises(ConfigError, match=r"but SORSYNC_SYSTEM_NAME is not") as caught:
        security_from_settings(
            _settings(
                sts_url="https://sts.example",
                cert_file=p12,
                cert_password=PASSWORD,
                cvr="12345678",
            )
        )
    assert PASSWORD not in str(caught.value)


def test_certificate_without_sts_url(p12: Path) -> None:
    with pytest.raises(ConfigError, match="SORSYNC_CERT_FILE, SORSYNC_CERT_PASSWORD set but"):
        security_from_settings(_settings(cert_file=p12, cert_password=PASSWORD))


def test_wrong_password_surfaces_as_config_error(p12: Path) -> None:
    with pytest.raises(ConfigError, match="wrong SORSYNC_CERT_PASSWORD"):
        security_from_settings(
            _settings(
                sts_url="https://sts.example",
                cert_file=p12,
                cert_password="nope",
                cvr="12345678",
                system_name="sorsync",
            )
        )
