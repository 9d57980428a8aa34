"""The console in a real browser: Debian's chromium driven by Playwright (no browser download)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from paypost.bootstrap import Paypost
from paypost.local.reference_ledger import Faults
from tests.support.api_calls import get_posting, wait_status
from tests.support.browser import CHROMIUM, DOCS, ONE, TWO, audit, row, sign_in
from tests.support.canaries import MEMO
from tests.support.ledgers import ReferenceLedger, serve_reference_ledger
from tests.support.tokens import OPERATOR, VIEWER
from tests.support.upstream import Upstream

if TYPE_CHECKING:
    from playwright.async_api import Locator, Page, Route

pytestmark = [pytest.mark.integration, pytest.mark.browser]

if not shutil.which(CHROMIUM):
    pytest.skip(f"no chromium at {CHROMIUM} (.ci/run installs Debian's)", allow_module_level=True)
playwright_api = pytest.importorskip("playwright.async_api")


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


@pytest.mark.api_only
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


async def test_a_key_for_several_practices_opens_on_every_practice_most_failures_first(
    page: Page, api: httpx.AsyncClient, upstream: Upstream
) -> None:
    in_a, in_b = await _two_practices(api, upstream)
    await _fails(api, upstream, "clinic-b", 1, practice_id="clinic-b", ehr_patient_id=None,
                 patient_account_id="acct-b2", amount="30.00")
    await page.goto("/")
    await page.evaluate("localStorage.clear()")
    await page.get_by_label("API token").fill(TWO)
    await page.get_by_label("API token").press("Enter")
    overview = page.locator("#practices-overview")
    await overview.wait_for()  # something useful at once: no practice to pick first
    await playwright_api.expect(page.locator("#overview-title")).to_be_focused()
    assert await page.locator("#practice-view").is_hidden()
    lines = page.locator("#overview-table tbody tr")
    await playwright_api.expect(lines).to_have_count(2)  # never clinic-c
    assert await lines.evaluate_all("rows => rows.map(r => r.dataset.practiceId)") == ["clinic-b", "clinic-a"]
    assert await lines.nth(0).locator("td").all_inner_texts() == [
        "2", "155.00", await lines.nth(0).locator("td").nth(2).inner_text(), "Answering", "4"]  # 2 tasks, 2 flags
    assert await page.locator("#overview-count").inner_text() == \
        "2 practices in your scope; 2 practices on this page with FAILED payments, most first."
    assert await page.locator("#who-name").inner_text() == "tess (viewer)"
    if os.environ.get("PAYPOST_DOCS_SCREENSHOTS"):
        await page.screenshot(path=str(DOCS / "console-two-practices.png"), full_page=True)

    # Each opens that practice at its Needs attention, and the choice is remembered.
    await page.get_by_role("button", name="Clinic B (clinic-b)").click()
    await row(page, in_b).wait_for()
    assert await row(page, in_a).count() == 0
    assert await page.get_by_label(f"Retry {in_b}").is_disabled()  # a viewer
    await playwright_api.expect(page.locator("#attention-title")).to_be_focused()
    await page.reload()  # signed in still (the session's token): the practice chosen opens at once
    await row(page, in_b).wait_for()
    assert await overview.is_hidden()

    # "All practices" goes back, and forgets the choice: the next sign-in opens on them again.
    await page.get_by_role("button", name="All practices").click()
    await overview.wait_for()
    await page.get_by_role("button", name="Clinic A (clinic-a)").click()
    await row(page, in_a).wait_for()
    assert await row(page, in_b).count() == 0


@pytest.mark.api_only
async def test_the_live_feed_stops_and_says_so_once_the_key_is_revoked(
    page: Page, api: httpx.AsyncClient, practice: str
) -> None:
    r = await api.post("/api/v1/api-keys", headers={"Authorization": "Bearer root-admin-token"},
                       json={"name": "brief", "role": "viewer", "practices": [practice]})
    assert r.status_code == 201, r.text
    made = r.json()
    await page.goto("/")
    await page.get_by_label("API token").fill(made["token"])
    await page.get_by_label("API token").press("Enter")
    await page.locator("#live.on").wait_for()
    r = await api.delete(f"/api/v1/api-keys/{made['key_id']}", headers={"Authorization": "Bearer root-admin-token"})
    assert r.status_code == 200
    live = page.locator("#live")
    # Locator assertions, not wait_for_function: a string evaluated in the page is eval, which the CSP refuses.
    await playwright_api.expect(live).to_contain_text("revoked", timeout=15_000)
    assert await live.inner_text() == "offline: the key was revoked or has expired"
    assert "on" not in (await live.get_attribute("class") or "")


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


# ---- triage: what the office sees first, and how it acts on a group ------------------------------

def group(page: Page, cause: str) -> Locator:
    return page.locator(f'li.group[data-cause="{cause}"]')


async def _fails(api: httpx.AsyncClient, upstream: Upstream, practice: str, n: int, **fields: str | None) -> list[str]:
    """``n`` payments that fail with the same cause; their payment ids."""
    ids = [(await upstream.payment(**fields))["payment_id"] for _ in range(n)]
    for payment_id in ids:
        await wait_status(api, practice, payment_id, "FAILED")
    return ids


async def test_it_opens_on_the_failure_groups_largest_first_with_their_fix_said_once(
    page: Page, api: httpx.AsyncClient, upstream: Upstream, practice: str
) -> None:
    await _fails(api, upstream, practice, 1, ehr_patient_id=None, patient_account_id="acct-small")
    await _fails(api, upstream, practice, 3, ehr_patient_id=None, patient_account_id="acct-big")
    await _fails(api, upstream, practice, 2, currency="EUR")  # the built-in ledger keeps USD: LEDGER_REJECTED

    await sign_in(page, OPERATOR)
    await group(page, "acct-small").wait_for()
    causes = await page.locator("li.group").evaluate_all("els => els.map(e => e.dataset.cause)")
    assert causes == ["acct-big", "The ledger keeps USD; this entry is in EUR.", "acct-small"]
    heading = await group(page, "acct-big").locator("h3").inner_text()
    assert heading == "3 payments, 375.00: PATIENT_NOT_MAPPED, patient account acct-big"
    # What fixes it: once per group (three groups, three times on the page), never on the rows.
    fix = "Enter the patient's practice-management id (the mapping)"
    assert await group(page, "acct-big").get_by_text(fix).count() == 1
    assert await page.get_by_text("What fixes it:").count() == 3
    assert await page.locator("#report").get_by_text(fix).count() == 0
    # The rows come from a request of their own beside the groups', and the focus once both are shown.
    await playwright_api.expect(page.locator("#report tbody tr")).to_have_count(6)
    # It opens there: the first thing after the top bar, and where the focus is.
    await playwright_api.expect(page.locator("#attention-title")).to_be_focused()
    attention_box = await page.locator("#attention").bounding_box()
    report_box = await page.locator("#report").bounding_box()
    assert attention_box is not None and report_box is not None
    assert attention_box["y"] < report_box["y"]
    # A cause paypost can fix is offered where the group is (operators only), a ledger's refusal is not.
    assert await group(page, "acct-big").get_by_role("button", name="Enter mapping for acct-big").count() == 1
    # The built-in ledger keeps no names: no patient search is offered for it (contract section 14).
    assert await page.get_by_role("button", name="Find the patient of acct-big").count() == 0
    rejected = group(page, "The ledger keeps USD; this entry is in EUR.")
    assert await rejected.get_by_role("button", name="Enter mapping", exact=False).count() == 0
    if os.environ.get("PAYPOST_DOCS_SCREENSHOTS"):  # README's picture: what the office sees first
        await page.locator("#live.on").wait_for()
        await group(page, "acct-big").get_by_label("Retry all 3").check()
        await page.get_by_role("button", name="Save Changes").click()
        await page.locator("#preview-text").wait_for()
        await page.screenshot(path=str(DOCS / "console.png"), full_page=True)


async def test_retrying_a_group_shows_the_dry_runs_count_then_its_rows_load(
    page: Page, api: httpx.AsyncClient, upstream: Upstream, practice: str
) -> None:
    ids = await _fails(api, upstream, practice, 2, ehr_patient_id="EHR-NEW", patient_account_id="acct-r")
    assert (await get_posting(api, practice, ids[0]) or {})["load_error"]["code"] == "PATIENT_NOT_FOUND"
    r = await api.put(f"/api/v1/practices/{practice}/ehr-patients/EHR-NEW", json={})  # the cause, fixed outside
    assert r.status_code == 200, r.text

    await sign_in(page, OPERATOR)
    await group(page, "acct-r").get_by_label("Retry all 2").check()
    await page.get_by_role("button", name="Save Changes").click()
    preview = page.locator("#preview-text")
    await preview.wait_for()
    assert await preview.inner_text() == "Save Changes would retry 2 now (2 payments in all)."
    assert await page.locator("#canary-choice").is_hidden()  # two is not a large retry
    await asyncio.sleep(0.3)
    for payment_id in ids:  # the dry run changed nothing
        assert (await get_posting(api, practice, payment_id) or {})["load_status"] == "FAILED"

    await page.get_by_role("button", name="Apply").click()
    for payment_id in ids:
        await row(page, payment_id).locator("td.status-LOADED").wait_for(timeout=10_000)
    await page.get_by_text("Saved: 2 retried.").wait_for()
    await group(page, "acct-r").wait_for(state="detached")  # the group is gone once its rows load
    posting = await get_posting(api, practice, ids[0])
    assert posting is not None and any(a["action"] == "retry" and a["actor"] == "alice" for a in posting["audit"])


async def test_clearing_a_group_needs_a_reason_and_clears_its_rows(
    page: Page, api: httpx.AsyncClient, upstream: Upstream, practice: str
) -> None:
    ids = await _fails(api, upstream, practice, 2, ehr_patient_id=None, patient_account_id="acct-gone")
    await sign_in(page, OPERATOR)
    save = page.get_by_role("button", name="Save Changes")
    await group(page, "acct-gone").get_by_label("Clear all 2").check()
    assert await save.is_disabled()  # a Clear needs its reason first
    assert "Every Clear needs a reason." in await page.locator("#save-count").inner_text()
    await group(page, "acct-gone").get_by_label("Reason to clear these 2").fill("patient left; posted by hand")
    assert await save.is_enabled()
    await save.click()
    await page.get_by_text("Save Changes would clear 2 now (2 payments in all).").wait_for()
    await page.get_by_role("button", name="Apply").click()

    for payment_id in ids:
        await row(page, payment_id).locator("td.status-CLEARED").wait_for(timeout=10_000)
    await page.get_by_text("Saved: 2 cleared.").wait_for()
    for payment_id in ids:
        posting = await get_posting(api, practice, payment_id)
        assert posting is not None and posting["load_status"] == "CLEARED"
        assert any(a["action"] == "clear" and a["reason"] == "patient left; posted by hand" for a in posting["audit"])


async def test_a_large_retry_is_offered_a_canary(
    page: Page, api: httpx.AsyncClient, upstream: Upstream, practice: str
) -> None:
    ids = await _fails(api, upstream, practice, 20, ehr_patient_id="EHR-BIG", patient_account_id="acct-many")
    assert len(set(ids)) == 20
    r = await api.put(f"/api/v1/practices/{practice}/ehr-patients/EHR-BIG", json={})
    assert r.status_code == 200, r.text
    await sign_in(page, OPERATOR)
    await group(page, "acct-many").get_by_label("Retry all 20").check()
    await page.get_by_role("button", name="Save Changes").click()
    await page.get_by_text("Save Changes would retry 20 now (20 payments in all).").wait_for()
    canary = page.get_by_label("Try 5 first, and go on only if every one of them loads")
    assert await canary.is_checked()
    async with page.expect_response(lambda r: r.url.endswith("/api/v1/postings/changes")) as sent:
        await page.get_by_role("button", name="Apply").click()
    operation_id = (await (await sent.value).json())["operation_id"]
    await page.get_by_text("Saved: 20 retried.").wait_for(timeout=30_000)
    operation = (await api.get(f"/api/v1/operations/{operation_id}")).json()
    assert operation["canary"]["size"] == 5 and operation["canary"]["state"] == "passed"
    for payment_id in ids:  # "retried" is sent back to loading: each then loads (on busy cores, not at once)
        await wait_status(api, practice, payment_id, "LOADED")


@pytest.mark.parametrize("settings", [10.0], indirect=True)  # ten replays a second: 150 take 15 s
async def test_a_running_save_changes_is_stopped_with_its_stop_button(
    page: Page, api: httpx.AsyncClient, upstream: Upstream, practice: str, paypost: Paypost
) -> None:
    from tests.integration.test_heal_cut_short import fail_for_want_of_a_mapping

    ids = await fail_for_want_of_a_mapping(upstream, paypost.collections, 150)
    await sign_in(page, OPERATOR)
    await group(page, "acct-cut").get_by_label("Retry all 150").check()
    await page.get_by_role("button", name="Save Changes").click()
    await page.get_by_text("Save Changes would retry 150 now (150 payments in all).").wait_for()
    await page.get_by_label("Try 5 first, and go on only if every one of them loads").uncheck()
    stop = page.get_by_role("button", name="Stop")
    assert await stop.is_hidden()  # only while a Save Changes runs
    async with page.expect_response(lambda r: r.url.endswith("/api/v1/postings/changes")) as sent:
        await page.get_by_role("button", name="Apply").click()
    operation_id = (await (await sent.value).json())["operation_id"]
    await stop.wait_for(state="visible")
    assert await page.locator("#progress").is_visible()
    await stop.click()
    await page.get_by_text("Stopped by alice").wait_for(timeout=30_000)
    await stop.wait_for(state="hidden")
    operation = (await api.get(f"/api/v1/operations/{operation_id}")).json()
    assert operation["status"] == "cancelled" and 0 < operation["cancelled"] < 150
    stopped = [i["payment_id"] for i in operation["items"] if i["result"] == "cancelled"]
    for payment_id in stopped[:5]:
        assert (await get_posting(api, practice, payment_id) or {})["load_status"] == "FAILED"
    assert set(stopped) <= set(ids)


async def test_save_changes_is_at_the_top_and_counts_what_is_ticked(
    page: Page, api: httpx.AsyncClient, upstream: Upstream, practice: str
) -> None:
    await _fails(api, upstream, practice, 2, ehr_patient_id=None, patient_account_id="acct-g")
    [single] = await _fails(api, upstream, practice, 1, ehr_patient_id=None, patient_account_id="acct-s")
    await sign_in(page, OPERATOR)
    count = page.locator("#save-count")
    await group(page, "acct-g").wait_for()
    assert await count.inner_text() == "Nothing ticked."
    await page.get_by_label(f"Retry {single}").check()
    assert await count.inner_text() == "1 payment ticked to retry."
    await group(page, "acct-g").get_by_label("Retry all 2").check()
    assert await count.inner_text() == "1 group (2 payments) and 1 payment ticked to retry."
    await group(page, "acct-g").get_by_label("Clear all 2").check()  # instead of retrying it
    assert await count.inner_text() == "1 group (2 payments) and 1 payment ticked to retry or clear. " \
        "Every Clear needs a reason."
    # The button says what the count is to a screen reader too, and stays at the top when scrolled.
    save = page.get_by_role("button", name="Save Changes")
    assert await save.get_attribute("aria-describedby") == "save-count"
    await page.mouse.wheel(0, 2000)
    await asyncio.sleep(0.2)
    box = await save.bounding_box()
    assert box is not None and 0 <= box["y"] < 120


async def test_counts_and_amounts_per_load_status_for_the_chosen_dates(
    page: Page, api: httpx.AsyncClient, upstream: Upstream, practice: str
) -> None:
    loaded = await upstream.payment(amount="60.00")
    await wait_status(api, practice, loaded["payment_id"], "LOADED")
    await _fails(api, upstream, practice, 2, ehr_patient_id=None, patient_account_id="acct-c", amount="45.50")
    await sign_in(page, OPERATOR)

    def line(status: str) -> Locator:
        return page.locator(f'#summary-table tr[data-status="{status}"]')

    await line("FAILED").wait_for()
    assert await line("FAILED").locator("td").all_inner_texts() == ["2", "91.00"]
    assert await line("LOADED").locator("td").all_inner_texts() == ["1", "60.00"]
    assert await line("HELD").locator("td").all_inner_texts() == ["0", "0.00"]
    assert await line("total").locator("td").all_inner_texts() == ["3", "151.00"]
    # Dates after today: nothing was received then.
    await page.get_by_label("Received from").fill("2999-01-01")
    await page.get_by_role("button", name="Show", exact=True).click()
    await page.get_by_text("Received from 2999-01-01 (inclusive).").wait_for()
    assert await line("total").locator("td").all_inner_texts() == ["0", "0.00"]
    # A status's count shows its rows.
    await page.get_by_label("Received from").fill("")
    await page.get_by_role("button", name="Show the LOADED payments").click()
    await row(page, loaded["payment_id"]).wait_for()
    assert await page.locator("#report tbody tr").count() == 1


async def test_a_note_added_shows_in_the_audit_trail_and_the_row(
    page: Page, api: httpx.AsyncClient, upstream: Upstream, practice: str
) -> None:
    payment_id = await failed_row_shown(page, api, upstream, practice, "acct-note", OPERATOR)
    await row(page, payment_id).get_by_role("button", name=payment_id).click()
    await page.get_by_label("Add a note").fill("called the patient, awaiting their id")
    await page.get_by_role("button", name="Add note").click()
    note = page.locator("#audit tr.audit-note")
    await note.wait_for()
    assert await note.locator("td").nth(1).inner_text() == "alice"
    assert await note.locator("td").nth(4).inner_text() == "called the patient, awaiting their id"
    await row(page, payment_id).get_by_role("button", name=f"1 note on {payment_id}").wait_for()
    if os.environ.get("PAYPOST_DOCS_SCREENSHOTS"):
        await page.evaluate("window.scrollTo(0, 0)")  # the top bar is sticky: a full page starts at the top
        await page.screenshot(path=str(DOCS / "console-posting.png"), full_page=True)
    posting = await get_posting(api, practice, payment_id)
    assert posting is not None and posting["notes_count"] == 1


async def test_an_assignee_set_shows_in_the_row(
    page: Page, api: httpx.AsyncClient, upstream: Upstream, practice: str
) -> None:
    payment_id = await failed_row_shown(page, api, upstream, practice, "acct-who", OPERATOR)
    await row(page, payment_id).get_by_role("button", name=payment_id).click()
    await page.get_by_role("button", name="Assign to me").click()
    assignee = row(page, payment_id).locator("td.assignee")
    await playwright_api.expect(assignee).to_have_text("alice")
    await page.get_by_label("Assignee", exact=True).fill("bob")
    await page.get_by_role("button", name="Set assignee").click()
    await playwright_api.expect(assignee).to_have_text("bob")
    assert await assignee.inner_text() == "bob"
    posting = await get_posting(api, practice, payment_id)
    assert posting is not None and posting["assignee"] == "bob"
    assigned = [a["detail"] for a in posting["audit"] if a["action"] == "assign"]
    assert assigned == ["assigned to alice", "assigned to bob"]


async def test_an_alert_is_snoozed_where_it_is_listed(
    page: Page, api: httpx.AsyncClient, upstream: Upstream, practice: str
) -> None:
    payment_id = await failed_row_shown(page, api, upstream, practice, "acct-zz", OPERATOR)
    task = page.locator("#alerts-list li", has_text=f"Office task: {payment_id}")
    await task.wait_for()
    await task.get_by_role("button", name=f"Snooze Office task: {payment_id}").click()
    await task.get_by_label("Snooze for").select_option(label="1 day")
    await task.get_by_label("because").fill("the office is closed tomorrow")
    await task.get_by_role("button", name="Snooze", exact=True).click()
    await page.locator("#alerts-list li", has_text="Snoozed until").wait_for()
    assert "by alice: the office is closed tomorrow" in await task.inner_text()
    r = await api.get("/api/v1/alerts", params={"practice_id": practice, "state": "open"})
    [alert] = [a for a in r.json()["items"] if a["kind"] == "task" and a["payment_id"] == payment_id]
    assert alert["snooze_reason"] == "the office is closed tomorrow" and alert["snoozed_by"] == "alice"
    ahead = (datetime.fromisoformat(alert["snoozed_until"]) - datetime.now(UTC)).total_seconds()
    assert 23 * 3600 < ahead <= 24 * 3600


async def test_a_returns_alert_is_resolved_by_hand_where_it_is_listed(
    page: Page, api: httpx.AsyncClient, upstream: Upstream, practice: str
) -> None:
    """Contract section 10: a return's task says what came back; the office resolves it, with a reason."""
    payment = await upstream.payment(amount="70.00", method="ach")
    await wait_status(api, practice, payment["payment_id"], "LOADED")
    return_id = f"ret-{payment['payment_id']}"
    await upstream.send("payment.returned", {
        "event_id": f"ev-{return_id}", "practice_id": practice, "return_id": return_id,
        "payment_id": payment["payment_id"], "amount": "70.00", "currency": "USD", "return_code": "R01",
        "occurred_at": "2026-12-06T10:00:00+00:00"})
    await wait_status(api, practice, return_id, "LOADED")
    await sign_in(page, OPERATOR)
    task = page.locator("#alerts-list li", has_text=f"Office task: {return_id}")
    await task.wait_for()
    assert "returned by the bank (R01)" in await task.inner_text()

    await task.get_by_role("button", name=f"Resolve Office task: {return_id}").click()
    await task.get_by_label("Reason for resolving").fill("the patient paid again by card")
    await task.get_by_role("button", name="Resolve", exact=True).click()
    await task.wait_for(state="detached")

    posting = await get_posting(api, practice, return_id)
    assert posting is not None
    assert [(a["actor"], a["reason"]) for a in posting["audit"] if a["action"] == "alert_resolved"] == [
        ("alice", "the patient paid again by card")]


# ---- accessibility: axe-core (bundled by axe-playwright-python) on each main view ------------------

async def test_the_main_views_pass_an_accessibility_audit(
    page: Page, api: httpx.AsyncClient, upstream: Upstream, practice: str
) -> None:
    await _fails(api, upstream, practice, 2, ehr_patient_id=None, patient_account_id="acct-ax")
    loaded = await upstream.payment(amount="60.00", merchant_transfer_id="MT-AX")
    await wait_status(api, practice, loaded["payment_id"], "LOADED")
    await page.goto("/")
    await page.get_by_label("API token").wait_for()
    await audit(page, "sign-in")
    await page.get_by_label("API token").fill(OPERATOR)
    await page.get_by_label("API token").press("Enter")
    await group(page, "acct-ax").wait_for()
    await audit(page, "Needs attention")
    await group(page, "acct-ax").get_by_role("button", name="Enter mapping for acct-ax").click()
    await group(page, "acct-ax").get_by_label("Clear all 2").check()
    await audit(page, "Needs attention, a group's mapping and clear open")
    await page.locator("#report-title").scroll_into_view_if_needed()
    await audit(page, "report")
    await row(page, loaded["payment_id"]).get_by_role("button", name=loaded["payment_id"]).click()
    await page.locator("#detail").wait_for()
    await audit(page, "posting detail")
    # Keyboard alone: Tab from the group's checkbox reaches its reason, and Save Changes takes Enter.
    reason = group(page, "acct-ax").get_by_label("Reason to clear these 2")
    await group(page, "acct-ax").get_by_label("Clear all 2").focus()
    await page.keyboard.press("Tab")
    assert await reason.evaluate("el => el === document.activeElement")
    # The audit is not blind: an input with no label is a critical violation it names.
    await page.evaluate("document.getElementById('detail').append(document.createElement('input'))")
    with pytest.raises(AssertionError, match="'label', 'critical'"):
        await audit(page, "posting detail with an unlabelled input")


# ---- a laptop's screen: Retry and Clear in view, long texts wrapped or cut with the whole reachable --

LONG_ACCOUNT = "acct-" + "x" * 70  # no space to break at
LAPTOPS = [(1280, 800), (1024, 768)]


@pytest.mark.parametrize(("width", "height"), LAPTOPS, ids=[f"{w}x{h}" for w, h in LAPTOPS])
async def test_on_a_laptop_a_failed_rows_retry_and_clear_are_in_view_without_scrolling_sideways(
    page: Page, api: httpx.AsyncClient, upstream: Upstream, practice: str, width: int, height: int
) -> None:
    [long_row] = await _fails(api, upstream, practice, 1, ehr_patient_id=None, patient_account_id=LONG_ACCOUNT,
                              merchant_transfer_id="MT-" + "9" * 60)
    # PATIENT_NOT_FOUND names the id the ledger does not know: a long one makes a long message.
    [long_message] = await _fails(api, upstream, practice, 1, patient_account_id="acct-long-id",
                                  ehr_patient_id="EHR-" + "-".join(["unknown"] * 14))
    invalid = {"payment_id": long_message}
    loaded = await upstream.payment(amount="60.00")
    await wait_status(api, practice, loaded["payment_id"], "LOADED")
    await page.set_viewport_size({"width": width, "height": height})
    await sign_in(page, OPERATOR)
    await row(page, long_row).locator("td.status-FAILED").wait_for()

    for payment_id in (long_row, invalid["payment_id"]):
        await row(page, payment_id).scroll_into_view_if_needed()
        for label in (f"Retry {payment_id}", f"Clear {payment_id}"):
            box = await page.get_by_label(label, exact=True).bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, (label, box, width)
        assert await page.evaluate("window.scrollX") == 0
    widths = await page.evaluate("""() => ({page: document.documentElement.scrollWidth, view: innerWidth,
        report: document.querySelector('.report').scrollWidth,
        column: document.querySelector('.report').clientWidth})""")
    assert widths["page"] <= widths["view"] and widths["report"] <= widths["column"], widths
    # Ticking Clear opens its reason in the row, and still nothing goes past the window's edge.
    await page.get_by_label(f"Clear {long_row}", exact=True).check()
    reason = await page.get_by_label(f"Reason to clear {long_row}").bounding_box()
    assert reason is not None and reason["x"] + reason["width"] <= width
    assert await page.evaluate("document.documentElement.scrollWidth <= innerWidth")
    assert await page.evaluate("""() => document.getElementById('report').getBoundingClientRect().right
        <= document.querySelector('.report').getBoundingClientRect().right""")  # within its column, not past it

    # A long Load Error message is cut to two lines in the row; the whole of it is its title, and the detail's.
    posting = await get_posting(api, practice, invalid["payment_id"])
    assert posting is not None
    message = posting["load_error"]["message"]
    shown = row(page, invalid["payment_id"]).locator(".msg")
    assert await shown.get_attribute("title") == message
    lines = await shown.evaluate("e => e.getBoundingClientRect().height / parseFloat(getComputedStyle(e).lineHeight)")
    assert 1.8 <= lines <= 2.2, lines
    assert await shown.evaluate("e => e.scrollHeight > e.clientHeight")  # cut: more of it than shows
    await row(page, invalid["payment_id"]).get_by_role("button", name=invalid["payment_id"]).click()
    await page.locator("#detail").wait_for()
    assert message in await page.locator("#detail-fields").inner_text()
    # The alerts go below the report on a laptop, not beside it.
    report_box, alerts_box = await page.locator("#report").bounding_box(), await page.locator("#alerts").bounding_box()
    assert report_box is not None and alerts_box is not None
    assert alerts_box["y"] > report_box["y"] + report_box["height"]
    await page.locator("#report-title").scroll_into_view_if_needed()
    await audit(page, f"report at {width}x{height}")
    if os.environ.get("PAYPOST_DOCS_SCREENSHOTS") and width == 1024:  # the report as the window shows it
        await page.locator("#detail-close").click()
        await page.evaluate("""() => { document.getElementById('report-title').scrollIntoView();
            window.scrollBy(0, -document.querySelector('.topbar').offsetHeight - 8); }""")
        await page.screenshot(path=str(DOCS / "console-laptop.png"), full_page=False)


# ---- finding the patient (contract section 14) -----------------------------------------------------

@pytest.fixture
async def system_practice(api: httpx.AsyncClient) -> AsyncIterator[tuple[str, ReferenceLedger]]:
    """clinic-pms, whose ledger is the reference practice-management system, knowing two patients by name."""
    async with serve_reference_ledger() as system:
        for patient_id, display in (("EHR-ZELDA", MEMO), ("EHR-YUSUF", "Yusuf Canaryperson, born 1970-01-01")):
            system.state.patients.add(patient_id)
            system.state.displays[patient_id] = display
        r = await api.put("/api/v1/practices/clinic-pms", json={
            "name": "Clinic on its system", "ledger": {"kind": "http", "base_url": system.url}, "enabled": True})
        assert r.status_code == 200, r.text
        yield "clinic-pms", system


async def test_the_office_finds_the_patient_beside_enter_mapping_and_the_payment_loads(
    page: Page, api: httpx.AsyncClient, upstream: Upstream, system_practice: tuple[str, ReferenceLedger]
) -> None:
    practice, system = system_practice
    [payment_id] = await _fails(api, upstream, practice, 1, practice_id=practice, ehr_patient_id=None,
                                patient_account_id="acct-find", amount="42.00")
    await sign_in(page, OPERATOR, practice)
    await group(page, "acct-find").get_by_role("button", name="Find the patient of acct-find").click()
    search = page.get_by_label("Find the patient of acct-find in the practice's system")
    await playwright_api.expect(search).to_be_focused()
    await search.fill("canaryperson")
    await search.press("Enter")
    found = group(page, "acct-find").locator("li.match")
    await playwright_api.expect(found).to_have_count(2)
    assert await found.locator(".patient-id").all_inner_texts() == ["EHR-YUSUF", "EHR-ZELDA"]
    await search.fill("zelda 1961")
    await group(page, "acct-find").get_by_role("button", name="Search").click()
    await playwright_api.expect(found).to_have_count(1)
    assert await found.locator(".display").inner_text() == MEMO
    if os.environ.get("PAYPOST_DOCS_SCREENSHOTS"):
        await page.locator("#live.on").wait_for()
        await page.screenshot(path=str(DOCS / "console-search.png"), full_page=False)
    await page.get_by_role("button", name=f"Choose {MEMO} (EHR-ZELDA) for acct-find").click()

    await row(page, payment_id).locator("td.status-LOADED").wait_for(timeout=10_000)
    await page.get_by_text("Mapping saved for acct-find: 1 failed payment sent back by themselves.").wait_for()
    posting = await get_posting(api, practice, payment_id)
    assert posting is not None and posting["ehr_patient_id"] == "EHR-ZELDA"
    assert system.state.searches == 2
    assert not await page.evaluate("Object.keys(localStorage).some(k => localStorage[k].includes('Zelda'))")


async def test_what_the_office_clicks_while_the_practice_still_loads_keeps_the_focus(
    page: Page, api: httpx.AsyncClient, upstream: Upstream, system_practice: tuple[str, ReferenceLedger]
) -> None:
    """The groups show before the practice's rows: a search opened then keeps its focus when the rows come."""
    practice, _ = system_practice
    [payment_id] = await _fails(api, upstream, practice, 1, practice_id=practice, ehr_patient_id=None,
                                patient_account_id="acct-early")
    rows_may_come = asyncio.Event()

    async def rows_later(route: Route) -> None:
        await rows_may_come.wait()
        await route.continue_()

    await page.route(re.compile(r"/api/v1/postings\?"), rows_later)
    await sign_in(page, OPERATOR, practice)
    await group(page, "acct-early").get_by_role("button", name="Find the patient of acct-early").click()
    search = page.get_by_label("Find the patient of acct-early in the practice's system")
    await playwright_api.expect(search).to_be_focused()
    assert await row(page, payment_id).count() == 0  # the practice was still loading
    rows_may_come.set()
    await row(page, payment_id).wait_for()
    await playwright_api.expect(search).to_be_focused()
    await page.keyboard.type("zelda")
    assert await search.input_value() == "zelda"


async def test_a_system_without_search_says_so_and_the_id_can_still_be_entered(
    page: Page, api: httpx.AsyncClient, upstream: Upstream, system_practice: tuple[str, ReferenceLedger]
) -> None:
    practice, system = system_practice
    system.state.faults = Faults(search_offered=False)
    [payment_id] = await _fails(api, upstream, practice, 1, practice_id=practice, ehr_patient_id=None,
                                patient_account_id="acct-nosearch")
    await sign_in(page, OPERATOR, practice)
    await row(page, payment_id).get_by_role("button", name=payment_id).click()
    search = page.locator("#mapping-search").get_by_label("Find the patient of acct-nosearch in the practice's system")
    await search.fill("zelda")
    await search.press("Enter")
    await page.locator("#mapping-search").get_by_text(
        "This practice's system offers no patient search: enter the id from it.").wait_for()
    await page.get_by_label("Patient id in the practice-management system for acct-nosearch").fill("EHR-ZELDA")
    await page.locator("#mapping-form").get_by_role("button", name="Save mapping").click()
    await row(page, payment_id).locator("td.status-LOADED").wait_for(timeout=10_000)
