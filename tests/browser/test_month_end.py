"""The console's month end (contract section 11) in Debian's chromium: the month's figures and blockers,
a deposit matched by hand, the close refused then forced with a reason, and a late payment marked."""

from __future__ import annotations

import functools
import os
import shutil
import uuid
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.support.api_calls import get_posting, wait_status
from tests.support.browser import CHROMIUM, DOCS, audit, row, sign_in
from tests.support.tokens import OPERATOR, VIEWER
from tests.support.upstream import Upstream
from tests.support.waits import wait_for

if TYPE_CHECKING:
    from playwright.async_api import Page

pytestmark = [pytest.mark.integration, pytest.mark.browser]

if not shutil.which(CHROMIUM):
    pytest.skip(f"no chromium at {CHROMIUM} (.ci/run installs Debian's)", allow_module_level=True)
playwright_api = pytest.importorskip("playwright.async_api")

P = "clinic-a"
OCTOBER = "2026-10"
LAPTOPS = [(1280, 800), (1024, 768)]


def settled(transfer: str, gross: str, fees: str) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "practice_id": P, "merchant_transfer_id": transfer, "payment_ids": [],
            "refund_ids": [], "gross_amount": gross, "fees_amount": fees,
            "net_amount": f"{float(gross) - float(fees):.2f}", "currency": "USD",
            "settled_at": "2026-10-20T12:00:00+00:00"}


async def _deposit(api: httpx.AsyncClient, deposit_id: str, status: str) -> dict[str, Any] | None:
    items = (await api.get(f"/api/v1/practices/{P}/deposits")).json()["items"]
    return next((d for d in items if d["deposit_id"] == deposit_id and d["status"] == status), None)


async def _known(api: httpx.AsyncClient, transfer: str) -> bool:
    return (await api.get(f"/api/v1/transfers/{P}/{transfer}")).status_code == 200


async def october(api: httpx.AsyncClient, upstream: Upstream) -> str:
    """October 2026 of clinic-a with two blockers: a FAILED payment, and a deposit of 39.00 that two
    transfers of 40.00 less 1.00 could each explain. The FAILED payment's id."""
    failed = await upstream.payment(amount="25.00", occurred_at="2026-10-15T12:00:00+00:00",
                                    patient_account_id="acct-oct", ehr_patient_id=None)
    await wait_status(api, P, failed["payment_id"], "FAILED")
    for transfer in ("MT-5", "MT-6"):
        await upstream.send("transfer.settled", settled(transfer, "40.00", "1.00"))
    for transfer in ("MT-5", "MT-6"):  # held before the deposit comes (its own queue), or it matches the first alone
        await wait_for(functools.partial(_known, api, transfer))
    await upstream.send("deposit.received", {"event_id": str(uuid.uuid4()), "practice_id": P, "deposit_id": "D-two",
                                             "amount": "39.00", "currency": "USD",
                                             "deposited_at": "2026-10-21T09:00:00+00:00"})
    await wait_for(lambda: _deposit(api, "D-two", "ambiguous"))
    return str(failed["payment_id"])


async def open_month_end(page: Page, month: str = OCTOBER) -> None:
    await page.get_by_role("button", name="Month end").click()
    await page.locator("#month-end").wait_for()
    await page.get_by_label("Month", exact=True).fill(month)
    await page.locator("#m-form").get_by_role("button", name="Show").click()
    await page.locator("#m-state").filter(has_text=month).wait_for()


async def test_the_office_matches_a_deposit_then_forces_the_close_and_a_late_payment_is_marked(
    page: Page, api: httpx.AsyncClient, upstream: Upstream, practice: str
) -> None:
    failed = await october(api, upstream)
    await sign_in(page, OPERATOR)
    await row(page, failed).wait_for()
    await open_month_end(page)
    state = page.locator("#m-state")
    assert await state.inner_text() == "2026-10 is not ready to close: 3 blockers."
    blockers = page.locator("#m-blockers li")
    assert sorted(await blockers.evaluate_all("items => items.map((i) => i.dataset.kind)")) == [
        "deposits_not_matched", "failed_postings", "transfers_not_reconciled"]
    assert await blockers.filter(has_text="FAILED").inner_text() == (
        "1 payment FAILED: retry or clear them in the report (25.00)")
    figures = await page.locator("#m-figures").inner_text()
    assert "FAILED\t1 for 25.00" in figures and "Deposits not matched\t1 for 39.00" in figures
    # Aging, counted from the deposit's and the transfers' dates to today: all over ten days old.
    aging = page.locator("#aging tbody tr")
    assert (await aging.nth(0).locator("td").all_inner_texts())[-1] == "2 (78.00)"
    assert (await aging.nth(1).locator("td").all_inner_texts())[-1] == "1 (39.00)"

    # The deposit that matches two ways: one of its candidates chosen, with a reason.
    deposit = page.locator('tr[data-deposit-id="D-two"]')
    assert await deposit.locator("td").nth(3).inner_text() == "ambiguous"
    assert "one of: MT-5; MT-6" in await deposit.inner_text()
    await deposit.get_by_role("button", name="Match D-two").click()
    await page.get_by_role("button", name="Use MT-6").click()
    assert await page.get_by_label("Merchant transfers (separated by commas)").input_value() == "MT-6"
    await page.get_by_label("Reason", exact=True).fill("bank reference 8812")
    await page.locator("#deposit-form").get_by_role("button", name="Match").click()
    await deposit.locator("td", has_text="matched").first.wait_for()
    assert await deposit.get_attribute("class") == "deposit-matched"
    assert await page.locator("#message").inner_text() == "Deposit D-two is matched to MT-6."
    matched = await _deposit(api, "D-two", "matched")
    assert matched is not None and matched["merchant_transfer_ids"] == ["MT-6"]
    await page.locator('#m-blockers li[data-kind="deposits_not_matched"]').wait_for(state="detached")

    # Closing: refused for its blockers, then forced with a reason.
    await page.get_by_label("Note for the close").fill("October")
    await page.get_by_role("button", name="Close the month").click()
    force = page.get_by_label("Close it anyway, past its blockers")
    await force.wait_for()
    assert "2 blockers stand in its way" in await page.locator("#message").inner_text()
    assert (await api.get(f"/api/v1/practices/{P}/periods/{OCTOBER}")).json()["closed"] is None
    await force.check()
    await page.get_by_label("Reason to close it anyway").fill("the failed payment was posted by hand")
    if os.environ.get("PAYPOST_DOCS_SCREENSHOTS"):
        await page.set_viewport_size({"width": 1280, "height": 900})
        await page.screenshot(path=str(DOCS / "console-month-end.png"), full_page=True)
    await page.get_by_role("button", name="Close the month").click()
    await state.filter(has_text="is closed").wait_for()
    forced = "forced past its blockers because the failed payment was posted by hand (October)"
    assert forced in await state.inner_text()
    assert await page.locator("#close-form").is_hidden()
    closed = (await api.get(f"/api/v1/practices/{P}/periods/{OCTOBER}")).json()["closed"]
    assert closed["forced"] is True and closed["closed_by"] == "alice"

    # A payment of October arriving after the close loads, and its row says it is late.
    late = await upstream.payment(amount="12.00", occurred_at="2026-10-20T12:00:00+00:00")
    await wait_for(lambda: _late(api, late["payment_id"]))
    await page.get_by_role("button", name="Back to the report").click()
    await row(page, late["payment_id"]).locator(".late").wait_for()
    assert await row(page, late["payment_id"]).locator("td.status-LOADED").inner_text() == "LOADED late"
    await row(page, late["payment_id"]).get_by_role("button", name=late["payment_id"]).click()
    await page.locator("#detail-fields").filter(has_text="Late for a closed month").wait_for()
    await page.get_by_role("button", name="Month end").click()
    await page.locator("#m-figures").filter(has_text=late["payment_id"]).wait_for()


async def _late(api: httpx.AsyncClient, payment_id: str) -> bool:
    posting = await get_posting(api, P, payment_id)
    return posting is not None and posting["late_for_closed_period"] is True


@pytest.mark.parametrize(("width", "height"), LAPTOPS, ids=[f"{w}x{h}" for w, h in LAPTOPS])
async def test_the_month_end_fits_a_laptop_and_passes_the_accessibility_audit(
    page: Page, api: httpx.AsyncClient, upstream: Upstream, practice: str, width: int, height: int
) -> None:
    await october(api, upstream)
    await page.set_viewport_size({"width": width, "height": height})
    await sign_in(page, OPERATOR)
    await open_month_end(page)
    await page.locator('tr[data-deposit-id="D-two"]').get_by_role("button", name="Match D-two").click()
    await page.get_by_role("button", name="Close the month").click()
    await page.get_by_label("Close it anyway, past its blockers").check()
    assert await page.evaluate("document.documentElement.scrollWidth <= innerWidth")
    for name in ("Match", "Close the month"):
        box = await page.get_by_role("button", name=name, exact=True).bounding_box()
        assert box is not None and box["x"] + box["width"] <= width, (name, box)
    await audit(page, f"month end at {width}x{height}")


async def test_a_viewer_sees_the_month_and_can_neither_close_it_nor_match(
    page: Page, api: httpx.AsyncClient, upstream: Upstream, practice: str
) -> None:
    await october(api, upstream)
    await sign_in(page, VIEWER)
    await open_month_end(page)
    await page.locator('tr[data-deposit-id="D-two"]').wait_for()
    assert await page.locator("#close-form").is_hidden()
    assert await page.locator('tr[data-deposit-id="D-two"] button').count() == 0
    # The month's rows download as a CSV, with the key in a header.
    async with page.expect_download() as download:
        await page.get_by_role("button", name="Download 2026-10's rows (CSV)").click()
    saved = await (await download.value).path()
    lines = saved.read_text().splitlines()
    assert lines[0].startswith("payment_id,kind,method,amount") and len(lines) == 2
    assert (await download.value).suggested_filename == f"{P}-{OCTOBER}.csv"
