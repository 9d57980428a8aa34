"""What the console's browser tests share: where chromium is, the keys, signing in, finding a row, and
the accessibility audit."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.async_api import Locator, Page

CHROMIUM = os.environ.get("PAYPOST_CHROMIUM", "/usr/bin/chromium")
ONE = "one-practice-token"  # an operator of clinic-a alone
TWO = "two-practices-token"  # a viewer of clinic-a and clinic-b
DOCS = Path(__file__).parents[2] / "docs"
CSP_WATCH = """window.__refused = [];
document.addEventListener("securitypolicyviolation",
  (e) => window.__refused.push(`${e.violatedDirective}: ${e.blockedURI || "inline"}`));"""


async def sign_in(page: Page, token: str, practice: str = "clinic-a") -> None:
    await page.goto(f"/?practice={practice}")
    await page.get_by_label("API token").fill(token)
    await page.get_by_label("API token").press("Enter")
    await page.locator("#app").wait_for(state="visible")


def row(page: Page, payment_id: str) -> Locator:
    return page.locator(f'tr[data-payment-id="{payment_id}"]')


async def audit(page: Page, view: str) -> None:
    """No serious or critical axe-core violation on what the page shows now."""
    from axe_playwright_python.async_playwright import Axe  # the test extra installs it: absent, this fails

    results = await Axe().run(page)
    if os.environ.get("PAYPOST_AXE_ALL"):
        print(view, [(v["id"], v["impact"], len(v["nodes"])) for v in results.response["violations"]])  # noqa: T201 - asked for
    found = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3]) for v in results.response["violations"]
             if v["impact"] in ("serious", "critical")]
    assert found == [], f"{view}: {found}"
    assert results.response["testEngine"]["name"] == "axe-core"  # the audit ran, and found nothing serious
