"""Getting the export: a download with a conditional GET, or a local file.

The export is refreshed once a night (01:00–04:30, docs/sor2.md §5), so most requests find it
unchanged: the ETag and Last-Modified of the last import are sent back (`If-None-Match`,
`If-Modified-Since`) and a `304 Not Modified` ends the import without a download. A download
goes to a temporary file (never into memory) and must arrive whole: fewer bytes than
Content-Length is an error, retried with backoff like a refused connection or a 5xx answer.
A local file is compared by its SHA-256 instead.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from sorsync.files.read import ExportError
from sorsync.krs.client import safe_url
from sorsync.krs.errors import TRANSIENT_HTTP_STATUS
from sorsync.sync.cancel import Cancellation
from sorsync.sync.retry import is_transient

CHUNK = 1024 * 1024
USER_AGENT = "sorsync (SOR2 file export import; https://github.com/)"

DownloadProgress = Callable[[int, int | None], None]  # (bytes so far, total or None)


@dataclass(slots=True)
class Fetched:
    """What one fetch found: a file to import (`path`), or `not_modified`."""

    location: str  # URL without credentials, or the local path
    path: Path | None = None
    not_modified: bool = False
    etag: str | None = None
    last_modified: str | None = None
    size: int | None = None
    sha256: str | None = None
    name: str = ""  # the file's base name (what it is: a zip or one CSV)
    temporary: bool = False  # `path` is ours to delete
    attempts: int = 1
    files: dict[str, str] = field(default_factory=dict)  # datatype → file name (set later)

    def to_dict(self) -> dict[str, Any]:
        return {
            "location": self.location,
            "not_modified": self.not_modified,
            "etag": self.etag,
            "last_modified": self.last_modified,
            "size": self.size,
            "sha256": self.sha256,
            "name": self.name,
            "attempts": self.attempts,
            "files": dict(self.files),
        }

    def cleanup(self) -> None:
        if self.temporary and self.path is not None:
            self.path.unlink(missing_ok=True)


def is_url(location: str) -> bool:
    return location.lower().startswith(("http://", "https://"))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(
    location: str,
    previous: dict[str, Any] | None = None,
    *,
    timeout: float = 60.0,
    retries: int = 3,
    backoff: float = 2.0,
    on_progress: DownloadProgress | None = None,
    sleep: Callable[[float], None] = time.sleep,
    cancel: Cancellation | None = None,
) -> Fetched:
    """The export at `location` (an http(s) URL or a local path; a directory of CSV files
    too). `previous` is the last import's `Fetched.to_dict()`: what to send back for a
    conditional GET (or the SHA-256 a local file is compared with). A download checks `cancel`
    between chunks and raises its Cancelled (sorsync.sync.cancel), leaving no file behind."""
    if is_url(location):
        return _download(location, previous, timeout, retries, backoff, on_progress, sleep, cancel)
    path = Path(location).expanduser()
    if path.is_dir():
        return Fetched(str(path), path=path, name=path.name)
    if not path.is_file():
        raise ExportError(
            f"no export at {path}: SORSYNC_FILES_URL names neither a file nor a directory;"
            " nothing was changed"
        )
    digest = sha256_of(path)
    same = previous is not None and previous.get("sha256") == digest
    return Fetched(
        str(path),
        path=None if same else path,
        not_modified=same,
        size=path.stat().st_size,
        sha256=digest,
        name=path.name,
    )


def _download(
    url: str,
    previous: dict[str, Any] | None,
    timeout: float,
    retries: int,
    backoff: float,
    on_progress: DownloadProgress | None,
    sleep: Callable[[float], None],
    cancel: Cancellation | None,
) -> Fetched:
    shown = safe_url(url)
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if previous:
        if previous.get("etag"):
            headers["If-None-Match"] = str(previous["etag"])
        if previous.get("last_modified"):
            headers["If-Modified-Since"] = str(previous["last_modified"])
    name = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1] or "export"
    attempt = 0
    while True:
        attempt += 1
        try:
            fetched = _get_once(url, shown, name, headers, timeout, on_progress, cancel)
            fetched.attempts = attempt
            return fetched
        except ExportError as exc:
            if not is_transient(exc) or attempt > retries:
                if attempt > 1:
                    raise ExportError(
                        f"{exc} (after {attempt} attempts)", transient=exc.transient
                    ) from None
                raise
            sleep(backoff * 2 ** (attempt - 1))


def _get_once(
    url: str,
    shown: str,
    name: str,
    headers: dict[str, str],
    timeout: float,
    on_progress: DownloadProgress | None,
    cancel: Cancellation | None,
) -> Fetched:
    try:
        answer = requests.get(url, headers=headers, stream=True, timeout=timeout)
    except requests.RequestException as exc:
        raise ExportError(
            f"cannot download {shown}: {type(exc).__name__} ({bounded_error(exc)}); nothing"
            " was changed",
            transient=True,
        ) from None
    with answer:
        if answer.status_code == 304:
            return Fetched(
                shown,
                not_modified=True,
                etag=answer.headers.get("ETag") or headers.get("If-None-Match"),
                last_modified=answer.headers.get("Last-Modified")
                or headers.get("If-Modified-Since"),
                name=name,
            )
        if answer.status_code != 200:
            transient = answer.status_code in TRANSIENT_HTTP_STATUS
            hint = ("; check SORSYNC_FILES_URL" if answer.status_code in (404, 410) else "") or (
                "; the server is busy — retrying later helps" if transient else ""
            )
            raise ExportError(
                f"{shown} answered HTTP {answer.status_code}{hint}; nothing was changed",
                transient=transient,
            )
        expected = _content_length(answer)
        fd, tmp = tempfile.mkstemp(prefix="sorsync-export-", suffix="-" + name)
        path = Path(tmp)
        digest = hashlib.sha256()
        got = 0
        try:
            with os.fdopen(fd, "wb") as out:
                try:
                    for chunk in answer.iter_content(CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        got += len(chunk)
                        if on_progress is not None:
                            on_progress(got, expected)
                        if cancel is not None:
                            cancel.check()
                except requests.RequestException as exc:
                    raise ExportError(
                        f"the download of {shown} broke off before its end ({got}"
                        f"{f' of {expected}' if expected else ''} bytes stored;"
                        f" {bounded_error(exc)}); nothing was changed",
                        transient=True,
                    ) from None
            if expected is not None and got != expected:
                raise ExportError(
                    f"the download of {shown} is incomplete: {got} of {expected} bytes"
                    " arrived; nothing was changed",
                    transient=True,
                )
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return Fetched(
            shown,
            path=path,
            etag=answer.headers.get("ETag"),
            last_modified=answer.headers.get("Last-Modified"),
            size=got,
            sha256=digest.hexdigest(),
            name=name,
            temporary=True,
        )


def _content_length(answer: requests.Response) -> int | None:
    value = answer.headers.get("Content-Length")
    return int(value) if value is not None and value.isdigit() else None


def bounded_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


def copy_to(fetched: Fetched, target: Path) -> None:
    """Keep a copy of the fetched file (for `sorsync files fetch --out`)."""
    if fetched.path is not None:
        shutil.copyfile(fetched.path, target)
