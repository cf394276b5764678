"""Which database this process talks to: SORSYNC_DATABASE_URL, or the embedded server."""

from __future__ import annotations

from sorsync.config import get_settings
from sorsync.db import embedded


def database_url() -> str:
    url = get_settings().database_url
    return url if url is not None else embedded.start()
