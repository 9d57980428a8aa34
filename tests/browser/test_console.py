"""The console in a real browser: Debian's chromium driven by Playwright (no browser download)."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
import uvicorn

from infra.local_services import free_port
from infra.settings import Settings
from paypost.bootstrap import Paypost
from tests.conftest import OPERATOR, TOKENS, VIEWER, Upstream
from tests.integration.helpers import get_posting, wait_status

if TYPE_CHECKING:
    from playwright.async_api import Locator, Page

pytestmark = [pytest.mark.integration, pytest.mark.browser]

CHROMIUM = os.environ.get("PAYPOST_CHROMIUM", "/usr/bin/chromium")
if not shutil.which(CHROMIUM):
    pytest.skip(f"no chromium at {CHROMIUM} (.ci/run installs Debian's)", allow_module_level=True)
playwright_api = pytest.importorskip("playwright.async_api")


ONE = "one-practice-token"  # an operator of clinic-a alone
TWO = "two-practices-token"  # a viewer of clinic-a and clinic-b
DOCS = Path(__file__).parents[2] / "docs"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={
        "api_tokens": f"{TOKENS},{ONE}:operator:olive:clinic-a,{TWO}:viewer:tess:clinic-a|clinic-b"})


@pytest.fixture
async def live_server(paypost: Paypost) -> AsyncIterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(paypost.http_app(manage_lifecycle=False), host="127.0.0.1",
                                           port=port, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn says it started with a flag, not an event
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await paypost.event_hub.close()  # ends the live streams, so the server can stop
        server.should_exit = True
        await task


@pytest.fixture
async def page(live_server: str) -> AsyncIterator[Page]:
    async with playwright_api.async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"])
        context = await browser.new_context(base_url=live_server, viewport={"width": 1500, "height": 900})
        page = await context.new_page()
        try:
            yield page
        finally:
            await context.close()
            await browser.close()


async def sign_in(page: Page, token: str, practice: str = "clinic-a") -> None:
    await page.goto(f"/?practice={practice}")
    await page.get_by_label("API token").fill(token)
    await page.get_by_label("API token").press("Enter")
    await page.locator("#app").wait_for(state="visible")


def row(page: Page, payment_id: str) -> Locator:
    return page.locator(f'tr[data-payment-id="{payment_id}"]')


async def test_a_failed_row_turns_loaded_live_once_its_mapping_is_entered(
    page: Page, api: httpx.AsyncClient, upstream: Upstream, practice: str, tmp_path: Path
) -> None:
    loaded = await upstream.payment(amount="60.00", merchant_transfer_id="MT-C")
    failed = await upstream.payment(ehr_patient_id=None, patient_account_id="acct-live", amount="45.00",
                                    merchant_transfer_id="MT-C")
    await wait_status(api, practice, loaded["payment_id"], "LOADED")
    await wait_status(api, practice, failed["payment_id"], "FAILED")

    await sign_in(page, OPERATOR)
    status = row(page, failed["payment_id"]).locator("td.status-FAILED")
    await status.wait_for()
    assert "PATIENT_NOT_MAPPED" in await row(page, failed["payment_id"]).inner_text()
    await page.locator("#live.on").wait_for()
    if os.environ.get("PAYPOST_SCREENSHOT"):
        await page.screenshot(path=os.environ["PAYPOST_SCREENSHOT"], full_page=True)

    await page.get_by_role("button", name="Enter mapping for acct-live").click()
    await page.get_by_label("Practice-management patient id for acct-live").fill("EHR-2")
    await page.get_by_role("button", name="Save mapping").click()

    await row(page, failed["payment_id"]).locator("td.status-LOADED").wait_for(timeout=10_000)
    await page.screenshot(path=str(tmp_path / "console.png"), full_page=True)
    posting = await get_posting(api, practice, failed["payment_id"])
    assert posting is not None and posting["load_status"] == "LOADED"


async def failed_row_shown(page: Page, api: httpx.AsyncClient, upstream: Upstream, practice: str, account: str,
                           token: str) -> str:
    """Publish a payment that fails (its account has no mapping), sign in with ``token`` and wait
    for its FAILED row; returns its payment id."""
    payment_id: str = (await upstream.payment(ehr_patient_id=None, patient_account_id=account))["payment_id"]
    await wait_status(api, practice, payment_id, "FAILED")
    await sign_in(page, token)
    await row(page, payment_id).locator("td.status-FAILED").wait_for()
    return payment_id


async def test_ticking_clear_with_a_reason_and_saving_makes_a_row_cleared(
    page: Page, api: httpx.AsyncClient, upstream: Upstream, practice: str
) -> None:
    payment_id = await failed_row_shown(page, api, upstream, practice, "acct-clr", OPERATOR)

    save = page.get_by_role("button", name="Save Changes")
    await page.get_by_label(f"Clear {payment_id}", exact=True).check()
    assert await save.is_disabled()  # a Clear needs its reason first
    await page.get_by_label(f"Reason to clear {payment_id}").fill("posted by hand, receipt 991")
    assert await save.is_enabled()
    await save.click()

    await row(page, payment_id).locator("td.status-CLEARED").wait_for(timeout=10_000)
    await page.get_by_text("Saved: 1 cleared.").wait_for()
    posting = await get_posting(api, practice, payment_id)
    assert posting is not None and posting["load_status"] == "CLEARED"
    assert any(a["action"] == "clear" and a["reason"] == "posted by hand, receipt 991" and a["actor"] == "alice"
               for a in posting["audit"])


async def test_a_viewer_token_can_change_nothing(
    page: Page, api: httpx.AsyncClient, upstream: Upstream, practice: str
) -> None:
    payment_id = await failed_row_shown(page, api, upstream, practice, "acct-view", VIEWER)

    assert await page.get_by_label(f"Retry {payment_id}").is_disabled()
    assert await page.get_by_label(f"Clear {payment_id}", exact=True).is_disabled()
    assert await page.get_by_role("button", name="Save Changes").is_disabled()
    assert await page.get_by_role("button", name="Enter mapping for acct-view").count() == 0

    # Even a hand-made request from the page is refused.
    statuses = await page.evaluate(
        """async ([token, practice, id]) => {
            const h = {Authorization: `Bearer ${token}`, "Content-Type": "application/json"};
            const a = await fetch("/api/v1/postings/changes", {method: "POST", headers: h,
                body: JSON.stringify({practice_id: practice, retry: [id], clear: []})});
            const b = await fetch(`/api/v1/practices/${practice}/patient-accounts/acct-view/mapping`,
                {method: "PUT", headers: h, body: JSON.stringify({ehr_patient_id: "EHR-1"})});
            return [a.status, b.status];
        }""",
        [VIEWER, practice, payment_id],
    )
    assert statuses == [403, 403]
    await asyncio.sleep(0.5)
    posting = await get_posting(api, practice, payment_id)
    assert posting is not None and posting["load_status"] == "FAILED"
    assert [a["action"] for a in posting["audit"]] == ["received", "failed", "dead_lettered"]


async def test_a_wrong_token_is_refused_at_sign_in(page: Page) -> None:
    await page.goto("/")
    await page.get_by_label("API token").fill("not-a-token")
    await page.keyboard.press("Enter")
    await page.get_by_text("That token is not one paypost knows.").wait_for()
    assert await page.locator("#app").is_hidden()


async def _two_practices(api: httpx.AsyncClient, upstream: Upstream) -> tuple[str, str]:
    """clinic-a and clinic-b, a FAILED payment in each, and clinic-c, seen by neither key."""
    ids = []
    for practice_id in ("clinic-a", "clinic-b", "clinic-c"):
        r = await api.put(f"/api/v1/practices/{practice_id}", json={
            "name": f"Clinic {practice_id[-1].upper()}", "ledger": {"kind": "builtin"}, "enabled": True})
        assert r.status_code == 200, r.text
        body = await upstream.payment(practice_id=practice_id, ehr_patient_id=None,
                                      patient_account_id=f"acct-{practice_id}")
        await wait_status(api, practice_id, body["payment_id"], "FAILED")
        ids.append(body["payment_id"])
    return ids[0], ids[1]


async def test_a_key_for_one_practice_sees_only_it_chosen_for_it(
    page: Page, api: httpx.AsyncClient, upstream: Upstream
) -> None:
    in_a, in_b = await _two_practices(api, upstream)
    await page.goto("/?practice=clinic-b")  # asking for another practice changes nothing
    await page.get_by_label("API token").fill(ONE)
    await page.get_by_label("API token").press("Enter")
    await row(page, in_a).wait_for()
    assert await page.locator("#who").inner_text() == "Signed in as olive (operator) Sign out"
    assert await page.locator("#one-practice").inner_text() == "Practice: Clinic A (clinic-a)"
    assert await page.locator("#practice-picker").is_hidden()  # nothing to pick
    assert await row(page, in_b).count() == 0
    assert await page.get_by_label(f"Retry {in_a}").is_enabled()
    await page.locator("#live.on").wait_for()
    if os.environ.get("PAYPOST_DOCS_SCREENSHOTS"):
        await page.screenshot(path=str(DOCS / "console-one-practice.png"), full_page=True)
    # The page's own token cannot reach clinic-b either.
    status = await page.evaluate(
        """async ([token, id]) => (await fetch(`/api/v1/postings/clinic-b/${id}`,
            {headers: {Authorization: `Bearer ${token}`}})).status""", [ONE, in_b])
    assert status == 404


async def test_a_key_for_two_practices_picks_between_them(
    page: Page, api: httpx.AsyncClient, upstream: Upstream
) -> None:
    in_a, in_b = await _two_practices(api, upstream)
    await page.goto("/")
    await page.evaluate("localStorage.clear()")
    await page.get_by_label("API token").fill(TWO)
    await page.get_by_label("API token").press("Enter")
    await page.locator("#app").wait_for(state="visible")
    picker = page.locator("#f-practice")
    options = await picker.locator("option").all_text_contents()
    assert options == ["Choose a practice", "Clinic A (clinic-a)", "Clinic B (clinic-b)"]  # never clinic-c
    assert await page.locator("#who-name").inner_text() == "tess (viewer)"

    await picker.select_option("clinic-b")
    await row(page, in_b).wait_for()
    assert await row(page, in_a).count() == 0
    assert await page.get_by_label(f"Retry {in_b}").is_disabled()  # a viewer
    await page.locator("#live.on").wait_for()
    if os.environ.get("PAYPOST_DOCS_SCREENSHOTS"):
        await picker.focus()
        await page.screenshot(path=str(DOCS / "console-two-practices.png"), full_page=True)

    await picker.select_option("clinic-a")
    await row(page, in_a).wait_for()
    assert await row(page, in_b).count() == 0


async def test_an_operator_holds_a_practice_and_releases_it_from_the_console(
    page: Page, api: httpx.AsyncClient, upstream: Upstream, practice: str
) -> None:
    await sign_in(page, OPERATOR)
    state = page.locator("#system-state")
    await page.get_by_text("It answers: payments load as they arrive.").wait_for()
    await page.get_by_label("Hold its payments, because").fill("practice-management upgrade")
    await page.get_by_role("button", name="Hold", exact=True).click()
    await page.get_by_text("HELD by alice since").wait_for()
    assert "practice-management upgrade" in await state.inner_text()

    body = await upstream.payment(patient_account_id="acct-hold")
    await wait_status(api, practice, body["payment_id"], "HELD")
    await page.get_by_role("button", name="Release held payments").click()
    await wait_status(api, practice, body["payment_id"], "LOADED")
    await page.get_by_text("It answers: payments load as they arrive.").wait_for()
    assert await page.get_by_role("button", name="Release held payments").is_hidden()
