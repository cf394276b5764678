"""DGWS security for KRS calls: SOSI ID cards, XML-DSig, and obtaining cards from an STS.

Two ways to give sorsync an ID card (docs/reference/design.md §3):

* mode 1 — `SORSYNC_IDCARD_FILE`: a file with an STS-issued card, sent verbatim;
* mode 2 — `SORSYNC_STS_URL` + `SORSYNC_CERT_FILE` (PKCS#12) + `SORSYNC_CERT_PASSWORD` +
  `SORSYNC_CVR` + `SORSYNC_SYSTEM_NAME`: sorsync signs its own card and has the STS issue one,
  renewing it before it expires.

Submodules `xmldsig` and `idcard` are pure and shared with the simulator's test STS.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sorsync.config import ConfigError

if TYPE_CHECKING:
    from sorsync.config import Settings
    from sorsync.krs.envelope import SecurityProvider

__all__ = ["security_from_settings"]

_STS_VARIABLES = {
    "cert_file": "SORSYNC_CERT_FILE",
    "cert_password": "SORSYNC_CERT_PASSWORD",
    "cvr": "SORSYNC_CVR",
    "system_name": "SORSYNC_SYSTEM_NAME",
}


def security_from_settings(settings: Settings) -> SecurityProvider | None:
    """The ID card source the settings ask for, or None (no security: the simulator).

    Raises ConfigError naming the variables when the settings are incomplete or contradictory.
    """
    if settings.idcard_file is not None and settings.sts_url is not None:
        raise ConfigError(
            "invalid configuration: SORSYNC_IDCARD_FILE and SORSYNC_STS_URL are both set; "
            "use one: a ready ID card file, or an STS plus certificate to obtain cards"
        )
    if settings.idcard_file is not None:
        from sorsync.krs.envelope import FileIdCard

        return FileIdCard(settings.idcard_file)
    if settings.sts_url is None:
        stray = [
            name for name in ("cert_file", "cert_password") if getattr(settings, name) is not None
        ]
        if stray:
            listed = ", ".join(_STS_VARIABLES[name] for name in stray)
            raise ConfigError(
                f"invalid configuration: {listed} set but SORSYNC_STS_URL is not; "
                "set SORSYNC_STS_URL to obtain ID cards from the STS, or unset them"
            )
        return None
    missing = [var for name, var in _STS_VARIABLES.items() if not getattr(settings, name)]
    if missing:
        raise ConfigError(
            f"invalid configuration: SORSYNC_STS_URL is set{_by_preset(settings)} but"
            f" {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not; obtaining ID cards from the STS needs "
            "the system certificate (PKCS#12), its password, the CVR and the IT system name"
        )
    from sorsync.dgws.sts import StsIdCardProvider

    assert settings.cert_file is not None
    assert settings.cert_password is not None
    assert settings.cvr is not None
    assert settings.system_name is not None
    return StsIdCardProvider(
        settings.sts_url,
        settings.cert_file,
        settings.cert_password.get_secret_value(),
        settings.cvr,
        settings.system_name,
        timeout=settings.krs_timeout,
    )


def _by_preset(settings: Settings) -> str:
    env = settings.nsp_environment
    return "" if env is None else f" (by SORSYNC_NSP_ENVIRONMENT={env}: {settings.sts_url})"
