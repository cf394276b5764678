"""The production path from the command line: `sorsync simulator --enforce CVR` (KRS enforcing
DGWS with its own test STS) and `sorsync sync` in STS mode with a generated test certificate."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from sorsync.testing.certs import make_system_certificate, write_pkcs12
from tests.e2e.test_sync_cli import cli_env, sorsync

CVR = "12345678"
PASSWORD = "cli test password"


@dataclass
class EnforcingSimulator:
    krs_url: str
    sts_url: str


def _read_urls(proc: subprocess.Popen[str]) -> EnforcingSimulator:
    assert proc.stdout is not None
    krs = sts = None
    deadline = time.monotonic() + 60
    while (krs is None or sts is None) and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("KRS simulator listening on "):
            krs = line.split(" on ", 1)[1].strip()
        elif line.startswith("test STS listening on "):
            sts = line.split(" on ", 1)[1].split()[0]
    assert krs, "the enforcing simulator did not start"
    assert sts, "the enforcing simulator did not start its test STS"
    return EnforcingSimulator(krs, sts)


@pytest.fixture
def enforcing_simulator(tmp_path: Path) -> Iterator[EnforcingSimulator]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "sorsync", "simulator", "--port", "0", "--enforce", CVR],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=tmp_path,
    )
    try:
        yield _read_urls(proc)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        assert proc.stdout is not None
        proc.stdout.close()


def _sts_env(
    sim: EnforcingSimulator, cert_file: Path, database_url: str, cvr: str
) -> dict[str, str]:
    return cli_env(
        database_url,
        sim.krs_url,
        SORSYNC_STS_URL=sim.sts_url,
        SORSYNC_CERT_FILE=str(cert_file),
        SORSYNC_CERT_PASSWORD=PASSWORD,
        SORSYNC_CVR=cvr,
        SORSYNC_SYSTEM_NAME="sorsync cli test",
    )


def test_sync_with_sts_card_against_enforcing_simulator(
    clean_db: Engine, database_url: str, enforcing_simulator: EnforcingSimulator, tmp_path: Path
) -> None:
    key, cert = make_system_certificate(cvr=CVR)
    p12 = write_pkcs12(tmp_path / "system.p12", key, cert, PASSWORD)
    env = _sts_env(enforcing_simulator, p12, database_url, CVR)

    done = sorsync(["sync", "--full", "--json"], env, tmp_path, timeout=120)

    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "ok"
    assert result["records"] > 0
    with clean_db.connect() as conn:
        rows = conn.execute(text("SELECT count(*) FROM krs.sor_sygehus_v1")).scalar_one()
    assert rows == result["records"]
    assert PASSWORD not in done.stderr + done.stdout


def test_cvr_without_permission_fails_clearly_and_writes_nothing(
    clean_db: Engine, database_url: str, enforcing_simulator: EnforcingSimulator, tmp_path: Path
) -> None:
    other_cvr = "87654321"
    key, cert = make_system_certificate(cvr=other_cvr)
    p12 = write_pkcs12(tmp_path / "other.p12", key, cert, PASSWORD)
    env = _sts_env(enforcing_simulator, p12, database_url, other_cvr)

    done = sorsync(["sync", "--full"], env, tmp_path, timeout=120)

    assert done.returncode == 1
    assert "unauthorized-access" in done.stderr
    assert "whitelist" in done.stderr
    with clean_db.connect() as conn:
        rows = conn.execute(text("SELECT count(*) FROM krs.sor_sygehus_v1")).scalar_one()
    assert rows == 0
