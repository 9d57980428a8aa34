"""Four paypost workers on one broker and one database: nothing loads out of order, nothing is
overwritten by an older replay, nothing is posted or sealed twice (contract section 9)."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from paypost.bootstrap import Paypost
from paypost.infra.mongo.audit_seals import AuditSealer
from paypost.infra.runtime.settings import Settings
from tests.support.api_calls import rows
from tests.support.ledgers import builtin_entries
from tests.support.payloads import payment_body
from tests.support.upstream import Upstream
from tests.support.waits import wait_for

pytestmark = pytest.mark.integration

WORKERS = 4


@pytest.fixture
async def workers(paypost: Paypost, settings: Settings) -> AsyncIterator[list[Paypost]]:
    """The ``paypost`` fixture's process and three more, each with its consumers, sweeps and sealer."""
    others = [Paypost(settings, retry_seconds=10) for _ in range(WORKERS - 1)]
    for other in others:
        await other.start()
    try:
        yield [paypost, *others]
    finally:
        for other in others:
            await other.stop()


def refund_body(payment: dict[str, Any], n: int) -> dict[str, Any]:
    return {"event_id": f"ev-ref-{n}", "practice_id": payment["practice_id"], "refund_id": f"ref-{n}",
            "payment_id": payment["payment_id"], "amount": "5.00", "currency": "USD",
            "occurred_at": "2026-11-25T10:00:00+00:00"}


async def test_four_workers_load_refunds_after_their_payments_and_never_go_back(
    workers: list[Paypost], api: httpx.AsyncClient, upstream: Upstream, practice: str,
) -> None:
    rng = random.Random(16)
    n = 240
    # A third of the payments fail at first (no mapping for their account), until it is entered.
    payments = [payment_body(payment_id=f"pay-{i}", patient_account_id=f"acct-{i % 3}",
                             ehr_patient_id=None if i % 3 == 0 else "EHR-1") for i in range(n)]
    refunds = [refund_body(p, i) for i, p in enumerate(payments) if i % 2 == 0]
    # Each refund right after its payment, or before it, duplicated; spread over four workers.
    messages = [("payment.posted", p) for p in payments] + [("payment.refunded", r) for r in refunds]
    messages += [m for m in messages if rng.random() < 0.3]  # redelivered copies
    rng.shuffle(messages)
    await asyncio.gather(*(upstream.send(key, body) for key, body in messages))

    failing = [p["payment_id"] for i, p in enumerate(payments) if i % 3 == 0]

    async def settled_failures() -> bool:
        failed = {r["payment_id"] for r in await rows(api, practice_id=practice, status="FAILED")}
        return set(failing) <= failed

    await wait_for(settled_failures, timeout=60)
    # The office enters the missing mapping while an operator retries the same payments by hand:
    # the self-healing and the retry race across the four workers.
    mapping = api.put(f"/api/v1/practices/{practice}/patient-accounts/acct-0/mapping",
                      json={"ehr_patient_id": "EHR-2"})
    retry = api.post("/api/v1/postings/changes", json={"practice_id": practice, "retry": failing, "clear": []})
    answers = await asyncio.gather(mapping, retry)
    assert [a.status_code for a in answers] == [200, 202]

    async def all_loaded() -> bool:  # n + refunds rows: one page of the report (at most 500)
        return len(await rows(api, practice_id=practice, status="LOADED")) == n + len(refunds)

    await wait_for(all_loaded, timeout=120)

    # Every payment and refund is in the ledger once; a refund's entry never precedes its payment's.
    entries = await builtin_entries(workers[0].collections, practice_id=practice)
    posted = Counter(e["refund_id"] or e["payment_id"] for e in entries)
    assert set(posted.values()) == {1} and len(posted) == n + len(refunds)
    at = {e["refund_id"] or e["payment_id"]: e["posted_at"] for e in entries}
    early = [r["refund_id"] for r in refunds if at[r["refund_id"]] < at[r["payment_id"]]]
    assert early == []

    # Once LOADED, no later outcome: no replay overwrote a newer one, whichever worker it reached.
    async for doc in workers[0].collections.postings.find({"practice_id": practice}, {"audit": 1}):
        outcomes = [a["action"] for a in doc["audit"] if a["action"] in ("loaded", "failed")]
        assert outcomes.count("loaded") == 1 and outcomes[-1] == "loaded", (doc["_id"], outcomes)

    # Four sealers (one per worker) kept one chain.
    for worker in workers:
        await worker.sealer.seal_all()
    result = await AuditSealer(workers[0].collections).verify()
    assert result.ok, result.problems[:5]
