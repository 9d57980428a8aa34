"""The console's browser tests: a paypost served over HTTP, and a page of Debian's chromium on it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

from paypost.bootstrap import Paypost
from paypost.infra.runtime.settings import Settings
from tests.support.browser import CHROMIUM, CSP_WATCH, ONE, TWO
from tests.support.http_server import serve_asgi
from tests.support.tokens import TOKENS

if TYPE_CHECKING:
    from playwright.async_api import Page


@pytest.fixture
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    # A test may ask for slower replays (parametrize "settings" indirectly with a rate a second).
    rate = getattr(request, "param", None)
    return settings.model_copy(update={
        "api_tokens": f"{TOKENS},{ONE}:operator:olive:clinic-a,{TWO}:viewer:tess:clinic-a|clinic-b,"
                      "root-admin-token:admin:root", **({"replay_rate": rate} if rate else {})})


@pytest.fixture
async def live_server(paypost: Paypost) -> AsyncIterator[str]:
    async with serve_asgi(paypost.http_app(manage_lifecycle=False)) as url:
        try:
            yield url
        finally:
            await paypost.event_hub.close()  # ends the live streams, so the server can stop


@pytest.fixture
async def page(live_server: str) -> AsyncIterator[Page]:
    from playwright.async_api import async_playwright  # each module skips where it is not installed

    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"])
        context = await browser.new_context(base_url=live_server, viewport={"width": 1500, "height": 900})
        # Whatever the Content-Security-Policy refuses (an inline script or style, another origin) is
        # counted: the console must work, every test of it, without anything refused (contract 12).
        await context.add_init_script(CSP_WATCH)
        page = await context.new_page()
        try:
            yield page
            if not page.is_closed():
                assert await page.evaluate("window.__refused") == [], "the console broke its CSP"
        finally:
            await context.close()
            await browser.close()
