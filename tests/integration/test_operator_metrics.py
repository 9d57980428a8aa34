"""The metrics an operator watches (contract section 13) say what stands, read from a real scrape:
the objective counters move with a payment, a held practice has its series and loses it when
released, the audit's waiting entries go to zero once sealed, and the build is named."""

from __future__ import annotations

import re

import httpx
import pytest

from paypost.bootstrap import Paypost
from tests.support.api_calls import wait_status
from tests.support.upstream import Upstream
from tests.support.waits import wait_for

pytestmark = pytest.mark.integration


async def scrape(api: httpx.AsyncClient) -> str:
    r = await api.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return r.text


def value(text: str, series: str) -> float | None:
    """The sample of ``series`` (its name and labels exactly as scraped), or None if it is absent."""
    found = re.search(rf"^{re.escape(series)} ([0-9.e+-]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else None


async def test_the_operators_metrics_follow_what_stands(
    paypost: Paypost, api: httpx.AsyncClient, upstream: Upstream, practice: str,
) -> None:
    before = await scrape(api)
    body = await upstream.payment()
    await wait_status(api, practice, body["payment_id"], "LOADED")
    after = await scrape(api)
    taken = value(after, "paypost_objective_payments_total") or 0
    assert taken >= (value(before, "paypost_objective_payments_total") or 0) + 1
    assert (value(after, "paypost_objective_payments_on_time_total") or 0) >= 1
    assert re.search(r'^paypost_build_info\{python="[0-9.]+",version="[^"]+"\} 1\.0$', after, re.MULTILINE)

    held_series = f'paypost_practice_held{{practice_id="{practice}"}}'
    assert (await api.post(f"/api/v1/practices/{practice}/hold", json={"reason": "metrics test"})).status_code == 200
    held = await scrape(api)
    assert value(held, held_series) == 1.0
    assert (value(held, "paypost_practices_held") or 0) >= 1
    assert (await api.post(f"/api/v1/practices/{practice}/release")).status_code == 200
    released = await scrape(api)
    assert value(released, held_series) is None  # only held practices have a series: bounded for 10,000

    async def sealed_whole() -> str | None:  # the access trail's writer may add a record after a round
        await paypost.sealer.seal_all()
        text = await scrape(api)
        return text if value(text, "paypost_audit_entries_unsealed") == 0.0 else None

    sealed = await wait_for(sealed_whole, timeout=15)
    assert value(sealed, "paypost_audit_entries_unsealed") == 0.0
    age = value(sealed, "paypost_audit_last_seal_age_seconds")
    assert age is not None and 0 <= age < 60
