"""The one retry policy (`sorsync.sync.retry.is_transient`) and the HTTP statuses it trusts."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy.exc import DBAPIError, OperationalError

from sorsync.datatypes import SYGEHUS
from sorsync.db.locks import LockHeld
from sorsync.dgws.errors import StsError
from sorsync.files.read import ExportError
from sorsync.krs.errors import TRANSIENT_HTTP_STATUS, DgwsFault, ReplicationFault, TransportError
from sorsync.krs.feed import parse_response
from sorsync.scheduler import SyncStopped
from sorsync.sync.retry import is_transient
from sorsync.sync.run import describe_error
from sorsync.sync.service import SourceError


def test_what_counts_as_transient() -> None:
    assert is_transient(TransportError("503"))
    assert is_transient(ReplicationFault("urn:stamdata:internal-error"))
    assert is_transient(StsError("the STS did not answer", transient=True))
    assert is_transient(ExportError("the download broke off", transient=True))
    assert is_transient(OperationalError("SELECT 1", {}, Exception("connection refused")))
    assert is_transient(psycopg.OperationalError("server closed the connection"))
    assert is_transient(ConnectionResetError())
    assert is_transient(TimeoutError())
    assert not is_transient(ReplicationFault("urn:stamdata:unauthorized-access"))
    assert not is_transient(DgwsFault("invalid_signature"))
    assert not is_transient(ExportError("not a zip file"))
    assert not is_transient(SourceError("bad ID card configuration"))
    assert not is_transient(psycopg.errors.UndefinedTable("no such table"))
    assert not is_transient(DBAPIError("SELECT 1", {}, Exception("syntax")))
    assert not is_transient(LockHeld("held"))
    assert not is_transient(SyncStopped("stop"))
    assert not is_transient(ValueError("bug"))


@pytest.mark.parametrize("status", [400, 404, 408, 429, 500, 502, 503, 504])
def test_krs_http_errors_follow_the_one_status_list(status: int) -> None:
    with pytest.raises(TransportError) as caught:
        parse_response(b"<html>busy</html>", status, SYGEHUS)
    assert is_transient(caught.value) is (status in TRANSIENT_HTTP_STATUS)


def test_the_engine_records_what_the_policy_says() -> None:
    lost = psycopg.OperationalError("server closed the connection")
    refused = psycopg.errors.UndefinedTable("relation does not exist")
    assert describe_error(SYGEHUS, lost)[1] is True
    assert describe_error(SYGEHUS, refused)[1] is False
    assert describe_error(SYGEHUS, TransportError("down"))[1] is True
