"""What every page visited in a browser test must satisfy, checked in one place."""

from __future__ import annotations

from pathlib import Path

from selenium import webdriver

from tests.ui.browser import axe_violations, describe, foreign_loads, screenshot


def check_page(driver: webdriver.Chrome, shots: Path, name: str) -> None:
    """A title naming the page, nothing loaded from another origin, no serious or critical
    axe-core violation; and a screenshot as shots/name.png."""
    assert driver.title.strip(), f"{driver.current_url} has no <title>"
    foreign = foreign_loads(driver)
    assert not foreign, f"{driver.current_url} loads from another origin: {foreign}"
    screenshot(driver, shots, name)
    violations = axe_violations(driver)
    assert not violations, f"{driver.current_url}:\n{describe(violations)}"
