"""What a browser test does on the console: sign in with a key; save a screenshot for the
README (only with FLEETMAIL_SCREENSHOTS=1, into docs/screenshots/).

Every browser test module imports this one: without a Chromium, the import skips the module
with one line saying how to get one (rather than one line per test)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from tests.browser.chromium import CHROMIUM, NO_CHROMIUM

if CHROMIUM is None:
    pytest.skip(NO_CHROMIUM, allow_module_level=True)

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


async def sign_in(page: Page, api_key: str) -> None:
    """Signs in at the console's form and waits for the overview."""
    await page.goto("/console/sign-in")
    await page.get_by_label("API key").fill(api_key)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Overview")).to_be_visible()


async def screenshot(page: Page, name: str, full_page: bool = True) -> Path | None:
    """docs/screenshots/<name>.png of the whole page (or what the viewport shows), when
    FLEETMAIL_SCREENSHOTS=1."""
    if os.environ.get("FLEETMAIL_SCREENSHOTS") != "1":
        return None
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=full_page)
    return path
