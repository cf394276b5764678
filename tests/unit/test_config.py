from __future__ import annotations

import os
from pathlib import Path

import pytest

from sorsync.config import ConfigError, load_settings
from sorsync.datatypes import DEFAULT_DATATYPES, DEMO_DATATYPES


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith("SORSYNC_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_defaults() -> None:
    s = load_settings()
    assert s.database_url is None
    assert s.krs_url is None
    assert s.krs_datatypes == ()
    assert s.datatype_keys == DEMO_DATATYPES
    assert s.krs_page_size == 2000
    assert s.delta_interval == 15
    assert s.full_cron == "30 3 * * *"


def test_a_configured_krs_replicates_sor2_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SORSYNC_KRS_URL", "https://krs.example/x")
    assert load_settings().datatype_keys == DEFAULT_DATATYPES
    assert all("/v2/" in key for key in DEFAULT_DATATYPES)


def test_any_well_formed_datatype_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SORSYNC_KRS_DATATYPES", "sor/v2/sorentity/v1,sor/v1/sygehus/v1,x/y/v3")
    settings = load_settings()
    assert settings.krs_datatypes == ("sor/v2/sorentity/v1", "sor/sygehus/v1", "x/y/v3")
    kinds = [(dt.storage, dt.register_version) for dt in settings.datatypes]
    assert kinds == [("document", 2), ("columns", 1), ("document", 1)]


def test_datatype_list_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SORSYNC_KRS_DATATYPES", " sor/yder/v1,sor/sygehus/v1 ,")
    assert load_settings().krs_datatypes == ("sor/yder/v1", "sor/sygehus/v1")


def test_database_url_is_normalised_to_psycopg(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SORSYNC_DATABASE_URL", "postgresql://u@h/db")
    assert load_settings().database_url == "postgresql+psycopg://u@h/db"


@pytest.mark.parametrize(
    ("variable", "value", "needle"),
    [
        ("SORSYNC_KRS_PAGE_SIZE", "0", "from 1 to 2000"),
        ("SORSYNC_KRS_PAGE_SIZE", "2001", "from 1 to 2000"),
        ("SORSYNC_KRS_PAGE_SIZE", "many", "from 1 to 2000"),
        ("SORSYNC_KRS_DATATYPES", "sor/Nope", "'sor/Nope' is not a KRS datatype key"),
        ("SORSYNC_KRS_URL", "ftp://x", "http:// or https://"),
        ("SORSYNC_DATABASE_URL", "mysql://x/y", "postgresql://"),
        ("SORSYNC_FULL_CRON", "every night", "cron"),
        ("SORSYNC_DELTA_INTERVAL", "0", "minutes"),
        ("SORSYNC_API_PORT", "70000", "TCP port"),
        ("SORSYNC_METRICS_PORT", "-1", "TCP port"),
        ("SORSYNC_API_CACHE_ENTRIES", "-5", "from 0 to 1000000"),
        ("SORSYNC_CVR", "1234", "8 digits"),
        ("SORSYNC_IDCARD_FILE", "/nonexistent/card.xml", "no readable file"),
    ],
)
def test_bad_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, needle: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"invalid configuration: {variable}=")
    assert needle in message


def test_secret_values_are_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SORSYNC_CERT_PASSWORD", "hunter2")
    monkeypatch.setenv("SORSYNC_KRS_PAGE_SIZE", "0")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "hunter2" not in str(info.value)
