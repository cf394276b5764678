"""Helpers for the browser tests: Debian's Chromium headless through chromium-driver, a check
that a page loaded nothing from another origin, axe-core in the page, and screenshots."""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
AXE = Path(__file__).with_name("vendor") / "axe.min.js"
AXE_SHA256 = "29348999450cdf2849a8e70b7912fc2da85a849da39c0d0d5394f51d4a9ed95c"
BLOCKING = ("serious", "critical")

# Selenium Manager would otherwise look for drivers online and report usage statistics;
# the driver and browser here are Debian's, given by path.
os.environ.setdefault("SE_AVOID_STATS", "true")
os.environ.setdefault("SE_OFFLINE", "true")


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """The app on an ephemeral loopback port in a thread: a real HTTP server for the browser."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "uvicorn stopped while starting"
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@contextmanager
def chromium(*, javascript: bool = True) -> Iterator[webdriver.Chrome]:
    """Headless Chromium with a fresh profile and nothing that phones home."""
    for path in (CHROMIUM, CHROMEDRIVER):
        assert os.access(path, os.X_OK), (
            f"{path} is missing: apt-get install chromium chromium-driver"
        )
    with tempfile.TemporaryDirectory(prefix="sorsync-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in (
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-default-apps",
            "--disable-extensions",
            "--lang=en-US",
            "--window-size=1280,900",
            f"--user-data-dir={profile}",
        ):
            options.add_argument(arg)
        if not javascript:
            options.add_experimental_option(
                "prefs", {"profile.managed_default_content_settings.javascript": 2}
            )
        driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
        try:
            driver.set_page_load_timeout(30)
            yield driver
        finally:
            driver.quit()


# Every URL the page fetched (Resource Timing) or refers to for loading (src, stylesheet and
# icon links, CSS url()s, SVG images): the ones whose origin is not the page's own.
_FOREIGN = """
const own = location.origin;
const urls = performance.getEntries().map(e => e.name).filter(n => /^[a-z]+:/.test(n));
for (const el of document.querySelectorAll('[src], link[href], image, use')) {
  for (const a of ['src', 'href', 'xlink:href']) {
    const v = el.getAttribute(a);
    if (v && !(el.tagName === 'A' || el.tagName === 'a')) urls.push(new URL(v, location.href).href);
  }
}
for (const sheet of document.styleSheets) {
  let rules = [];
  try { rules = sheet.cssRules; } catch (e) { urls.push(sheet.href || 'unreadable stylesheet'); }
  for (const rule of rules) {
    for (const m of rule.cssText.matchAll(/url\\(["']?([^"')]+)/g)) {
      urls.push(new URL(m[1], sheet.href || location.href).href);
    }
  }
}
return urls.filter(u => !u.startsWith(own + '/') && u !== own && !u.startsWith('data:'));
"""


def foreign_loads(driver: webdriver.Chrome) -> list[str]:
    found: list[str] = driver.execute_script(_FOREIGN)
    return found


def axe_violations(driver: webdriver.Chrome) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations of the current page (WCAG 2 A/AA rules and
    best practices)."""
    source = AXE.read_bytes()
    assert hashlib.sha256(source).hexdigest() == AXE_SHA256, "tests/ui/vendor/axe.min.js changed"
    driver.execute_script(source.decode())
    result: list[dict[str, Any]] = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']})"
        ".then(r => done(r.violations), e => done([{id: 'axe-error', impact: 'critical',"
        " help: String(e), nodes: []}]));"
    )
    return [v for v in result if v.get("impact") in BLOCKING]


def describe(violations: list[dict[str, Any]]) -> str:
    lines = []
    for v in violations:
        targets = [n.get("target") for n in v.get("nodes", [])][:3]
        lines.append(f"{v['impact']} {v['id']}: {v.get('help')} at {targets}")
    return "\n".join(lines)


def screenshot(driver: webdriver.Chrome, directory: Path, name: str) -> Path:
    """The whole page (the window grown to its height) as directory/name.png."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, max(600, min(int(height) + 140, 4000)))
    path = directory / f"{name}.png"
    driver.save_screenshot(str(path))
    driver.set_window_size(1280, 900)
    return path
