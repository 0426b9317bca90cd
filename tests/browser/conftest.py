"""The browser tier: the system's Chromium (or one Playwright installed), headless, driven by
Playwright against the session's stack. No browser is downloaded here; without one the tests
are skipped, saying how to get one.

`browser` starts once per run (Playwright gives it a fresh profile directory); `page` is a
new browser context per test (no cookie carries over), its base URL the stack's gateway.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fleetmail_devkit.stack import Stack
from playwright.async_api import Browser, Page, async_playwright

from tests.browser.chromium import CHROMIUM, CHROMIUM_ARGS, NO_CHROMIUM


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    if CHROMIUM is None:
        pytest.skip(NO_CHROMIUM)
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Browser, stack: Stack) -> AsyncIterator[Page]:
    context = await browser.new_context(base_url=stack.gateway_url)
    try:
        yield await context.new_page()
    finally:
        await context.close()
