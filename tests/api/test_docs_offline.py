"""/docs and /redoc work on a closed network: every asset their pages reference is served by
the API itself (api/docs.py), and nothing points at another host."""

from __future__ import annotations

import re

import pytest
from starlette.testclient import TestClient

# src="…", href="…", and the quoted URL of the OpenAPI document in the page's script.
_REFERENCE = re.compile(r"""(?:src|href)=["']([^"']+)["']|url:\s*'([^']+)'|spec-url=["']([^"']+)""")


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_every_asset_is_served_by_the_api(api_client: TestClient, page: str) -> None:
    html = api_client.get(page)
    assert html.status_code == 200
    assert html.headers["content-type"].startswith("text/html")
    references = {next(g for g in m.groups() if g) for m in _REFERENCE.finditer(html.text)}
    assert "/openapi.json" in references
    assert len(references) >= 3, references  # the script, a favicon, the document
    for url in sorted(references):
        assert url.startswith("/"), f"{page} refers off-host: {url}"
        assert not url.startswith("//"), f"{page} refers off-host: {url}"
        answer = api_client.get(url)
        assert answer.status_code == 200, f"{page} refers to {url}: {answer.status_code}"
        assert answer.content
    assert "validatorUrl" not in html.text or '"validatorUrl": null' in html.text
