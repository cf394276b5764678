"""End to end with DGWS: test STS → sorsync's card → KRS client → simulator in enforcement mode
→ sync engine → PostgreSQL. Everything over real HTTP on 127.0.0.1 and a real database."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from lxml import etree
from sqlalchemy import Engine

from sorsync.datatypes import SYGEHUS
from sorsync.dgws.sts import StsIdCardProvider
from sorsync.krs.client import KrsClient
from sorsync.krs.envelope import FileIdCard, SecurityProvider
from sorsync.krs.wire import START_TOKEN
from sorsync.simulator.render import SoapFaultSpec
from sorsync.simulator.server import SimulatorHandle, serve_in_thread
from sorsync.simulator.store import Store
from sorsync.sync.engine import sync
from sorsync.sync.results import RunResult
from sorsync.testing.certs import make_system_certificate, write_pkcs12
from sorsync.testing.enforce import Enforcer, make_enforcer
from sorsync.testing.sts import SimulatedSts, StsHandle, serve_sts_in_thread
from tests.fixtures.simulator import add_rows
from tests.fixtures.sync import assert_replica_matches_store, replica_rows, sync_token

CVR = "12345678"
PASSWORD = "e2e pkcs12 password"
CPH = ZoneInfo("Europe/Copenhagen")
_calls_lock = threading.Lock()


class Clock:
    """Real time plus an adjustable offset, shared by the STS and the enforcement."""

    def __init__(self) -> None:
        self.offset = timedelta()
        self._lock = threading.Lock()

    def advance(self, delta: timedelta) -> None:
        with self._lock:
            self.offset += delta

    def __call__(self) -> datetime:
        with self._lock:
            return datetime.now(UTC) + self.offset


@dataclass
class Nsp:
    """A stand-in NSP: the test STS and the KRS simulator enforcing DGWS."""

    sts: StsHandle
    simulator: SimulatorHandle
    enforcer: Enforcer
    permissions: dict[str, set[str]]
    clock: Clock
    calls: int = 0
    advance_at_call: int | None = None  # move the clock 2 h ahead before this KRS call
    enforce_clock_offset: timedelta = timedelta()

    def enforce(self, envelope: etree._Element, raw: bytes, view: str) -> SoapFaultSpec | None:
        with _calls_lock:
            self.calls += 1
            if self.advance_at_call == self.calls:
                self.clock.advance(timedelta(hours=2))
        return self.enforcer(envelope, raw, view)


@pytest.fixture(scope="module")
def client_creds() -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    return make_system_certificate(cvr=CVR, organisation="Sorsync E2E ApS")


@pytest.fixture
def p12(tmp_path: Path, client_creds: tuple[rsa.RSAPrivateKey, x509.Certificate]) -> Path:
    return write_pkcs12(tmp_path / "system.p12", *client_creds, PASSWORD)


@pytest.fixture
def nsp() -> Iterator[Nsp]:
    clock = Clock()
    sts = serve_sts_in_thread(SimulatedSts(clock=clock, validity=timedelta(hours=1)))
    permissions = {CVR: {SYGEHUS.key}}
    enforcer = make_enforcer([sts.cert], permissions, now=clock)
    holder: dict[str, Nsp] = {}

    def hook(envelope: etree._Element, raw: bytes, view: str) -> SoapFaultSpec | None:
        return holder["nsp"].enforce(envelope, raw, view)

    simulator = serve_in_thread(Store(), enforce=hook)
    holder["nsp"] = Nsp(sts, simulator, enforcer, permissions, clock)
    add_rows(
        simulator.store,
        SYGEHUS.key,
        [
            {
                "sorNummer": 1000 + n,
                "navn": f"Sygehus {n}",
                "validFrom": datetime(2003, 1, 1, tzinfo=CPH),
                "validTo": datetime(2999, 12, 31, tzinfo=CPH),
            }
            for n in range(5)
        ],
    )
    try:
        yield holder["nsp"]
    finally:
        simulator.stop()
        sts.stop()


def _provider(nsp: Nsp, p12: Path) -> StsIdCardProvider:
    return StsIdCardProvider(nsp.sts.url, p12, PASSWORD, CVR, "sorsync-e2e", 5.0)


def _sync(engine: Engine, nsp: Nsp, security: SecurityProvider) -> RunResult:
    with KrsClient(nsp.simulator.url, timeout=10, security=security) as client:
        return sync(engine, client, [SYGEHUS], page_size=2)


def _assert_failed_cleanly(engine: Engine, result: RunResult, *needles: str) -> None:
    assert not result.ok
    message = result.error or ""
    for needle in needles:
        assert needle in message, message
    assert replica_rows(engine, SYGEHUS) == {}
    assert sync_token(engine, SYGEHUS) in (None, START_TOKEN)  # the token did not move


def test_sync_with_an_sts_card(clean_db: Engine, nsp: Nsp, p12: Path) -> None:
    result = _sync(clean_db, nsp, _provider(nsp, p12))
    assert result.ok, result.error
    assert result.records == 5
    assert result.pages >= 3
    assert_replica_matches_store(clean_db, nsp.simulator.store, [SYGEHUS])
    assert nsp.sts.sts.issued == 1  # one card for the whole run
    assert nsp.enforcer.rejections == []


def test_card_in_a_file_mode_1(clean_db: Engine, nsp: Nsp, p12: Path, tmp_path: Path) -> None:
    card_file = tmp_path / "idcard.xml"
    card_file.write_bytes(_provider(nsp, p12).assertion())
    result = _sync(clean_db, nsp, FileIdCard(card_file))
    assert result.ok, result.error
    assert_replica_matches_store(clean_db, nsp.simulator.store, [SYGEHUS])


def test_card_expiring_mid_sync_is_renewed(clean_db: Engine, nsp: Nsp, p12: Path) -> None:
    # The STS issues 1-hour cards; before the 3rd KRS call NSP's clock jumps 2 hours, so the
    # card the client still holds is expired there: KRS answers expired_idcard, the client calls
    # renew(), gets a new card from the STS and repeats the call.
    nsp.advance_at_call = 3
    provider = _provider(nsp, p12)
    result = _sync(clean_db, nsp, provider)
    assert result.ok, result.error
    assert_replica_matches_store(clean_db, nsp.simulator.store, [SYGEHUS])
    codes = [code for code, _ in nsp.enforcer.rejections]
    assert codes
    assert set(codes) == {"expired_idcard"}
    assert nsp.sts.sts.issued >= 2


def test_level_1_card_fails(clean_db: Engine, nsp: Nsp, p12: Path) -> None:
    nsp.sts.sts.level = 1
    result = _sync(clean_db, nsp, _provider(nsp, p12))
    _assert_failed_cleanly(clean_db, result, "security_level_failed", "level 3")


class Tampering:
    """Hands out the STS card with one signed value changed."""

    def __init__(self, inner: StsIdCardProvider) -> None:
        self.inner = inner

    def assertion(self) -> bytes:
        return self.inner.assertion().replace(b">sorsync-e2e<", b">sorsync-evil<")

    def renew(self) -> None:
        self.inner.renew()


def test_tampered_card_fails(clean_db: Engine, nsp: Nsp, p12: Path) -> None:
    result = _sync(clean_db, nsp, Tampering(_provider(nsp, p12)))
    _assert_failed_cleanly(clean_db, result, "invalid_signature")
    assert "digest mismatch" in nsp.enforcer.rejections[0][1]


def test_cvr_without_permission_fails(clean_db: Engine, nsp: Nsp, p12: Path) -> None:
    nsp.permissions.clear()
    nsp.permissions["87654321"] = {SYGEHUS.key}
    result = _sync(clean_db, nsp, _provider(nsp, p12))
    _assert_failed_cleanly(clean_db, result, "urn:stamdata:unauthorized-access", "whitelist")


def test_expired_card_fails_after_one_renewal(clean_db: Engine, nsp: Nsp, p12: Path) -> None:
    # NSP's clock is two days ahead for KRS only: every card the STS issues is already expired
    # there. The client renews once, then gives up with a message naming the cause.
    late = Clock()
    late.advance(timedelta(days=2))
    nsp.enforcer = make_enforcer([nsp.sts.cert], nsp.permissions, now=late)
    result = _sync(clean_db, nsp, _provider(nsp, p12))
    _assert_failed_cleanly(clean_db, result, "expired_idcard", "clock")
    assert [code for code, _ in nsp.enforcer.rejections] == ["expired_idcard"] * 2
    assert nsp.sts.sts.issued == 2


def test_no_card_at_all_fails(clean_db: Engine, nsp: Nsp) -> None:
    result = _sync(clean_db, nsp, _NoCard())
    _assert_failed_cleanly(clean_db, result, "processing_problem")


class _NoCard:
    def assertion(self) -> bytes | None:
        return None

    def renew(self) -> None:
        return None
