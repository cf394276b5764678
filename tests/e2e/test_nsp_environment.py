"""SORSYNC_NSP_ENVIRONMENT=test1|test2 fills the KRS and STS URLs from NSP's public test hosts;
explicit URLs win. Through Settings and the real CLI (which stops before any network call,
for want of a certificate)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sorsync.config import ConfigError, load_settings
from tests.e2e.test_sync_cli import cli_env, sorsync

TEST1_KRS = "http://test1-cnsp.ekstern-test.nspop.dk:8080/stamdata-batch-copy-ws/service/StamdataReplication"
TEST2_STS = "http://test2-cnsp.ekstern-test.nspop.dk:8080/sts/services/NewSecurityTokenService"


def test_presets_and_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SORSYNC_KRS_URL", "SORSYNC_STS_URL", "SORSYNC_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    one = load_settings(nsp_environment="TEST1")
    assert one.krs_url == TEST1_KRS
    assert one.sts_url == TEST1_KRS.split("/stamdata")[0] + "/sts/services/NewSecurityTokenService"
    assert not one.demo_mode
    two = load_settings(nsp_environment="test2", krs_url="https://krs.example/ws")
    assert two.krs_url == "https://krs.example/ws"
    assert two.sts_url == TEST2_STS
    with pytest.raises(ConfigError, match="SORSYNC_NSP_ENVIRONMENT=prod"):
        load_settings(nsp_environment="prod")


def test_the_cli_uses_the_preset(database_url: str, tmp_path: Path) -> None:
    env = cli_env(database_url, "", SORSYNC_NSP_ENVIRONMENT="test1")
    del env["SORSYNC_KRS_URL"]
    done = sorsync(["sync"], env, tmp_path)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "SORSYNC_NSP_ENVIRONMENT=test1" in done.stderr
    assert TEST1_KRS.split("/stamdata")[0] + "/sts/services/NewSecurityTokenService" in done.stderr
