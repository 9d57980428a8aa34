"""What only the ``http`` ledger does: its protocol, retries, lookups before re-posts, and no answer
after them (the payment waits: LedgerUnreachable), against the reference ledger with faults
injected; then paypost posting to it end to end. What every ledger does is in test_ledger_port.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import httpx
import pytest

from paypost.domain.errors import LedgerUnreachable, LoadFailure, TransientFailure
from paypost.domain.load_errors import LoadErrorCode
from paypost.domain.ports.ledgers import Ledger
from paypost.domain.posting import LedgerEntryRequest, LedgerReceipt
from paypost.infra.ledgers.http import HttpLedgers
from paypost.local.reference_ledger import Faults
from paypost.local.servers import free_port
from paypost.testing.ledger_suite import PATIENT, PRACTICE, payment_request
from tests.support.api_calls import wait_status
from tests.support.ledgers import (
    CLOSED_PATIENT,
    LOCAL_HOSTS,
    HttpLedgerUnderTest,
    ReferenceLedger,
    ScriptedRandom,
    http_integration,
    http_ledger,
    serve_reference_ledger,
)
from tests.support.upstream import Upstream

pytestmark = pytest.mark.integration

ATTEMPTS = 3
# Each request's limit: well above a first answer's time on a loaded machine (over 0.5 s seen in CI).
TIMEOUT = 2.0
POST = ("POST", "/entries")
# Answers lost after the entry was made, and 5xx, often enough that most payments meet one.
FLAKY = Faults(drop_after_commit_rate=0.3, error_rate=0.1)


@pytest.fixture
async def subject() -> AsyncIterator[HttpLedgerUnderTest]:
    async with http_ledger(attempts=ATTEMPTS, timeout=TIMEOUT) as subject:
        yield subject


def lookup(subject: HttpLedgerUnderTest, request: LedgerEntryRequest) -> tuple[str, str]:
    return ("GET", subject.server.lookup_path(request))


async def unavailable(ledger: Ledger, request: LedgerEntryRequest) -> str:
    """Post ``request``, which must get no answer (``LedgerUnreachable``: it waits); what was said."""
    with pytest.raises(LedgerUnreachable) as caught:
        await ledger.post(request)
    return str(caught.value)


# The HTTP ledger against the reference ledger.

async def test_an_entry_is_posted_as_the_protocol_says(subject: HttpLedgerUnderTest) -> None:
    request = payment_request("pay-1", amount="125.5")

    receipt = await subject.ledger.post(request)

    assert subject.server.requests == [POST]  # nothing to look up before a first post
    assert subject.server.state.entries == {f"paypost:{PRACTICE}:pay-1": {
        "entry_id": receipt.entry_id, "idempotency_key": f"paypost:{PRACTICE}:pay-1",
        "practice_id": PRACTICE, "patient_id": PATIENT, "payment_id": "pay-1", "refund_id": None,
        "kind": "payment", "reversal_id": None, "amount": "125.50", "currency": "USD",
        "occurred_at": "2026-11-25T10:00:00+00:00",
    }}


async def test_a_5xx_is_retried_after_a_lookup_finds_nothing(subject: HttpLedgerUnderTest) -> None:
    state = subject.server.state
    state.faults, state.rng = Faults(error_rate=0.5), ScriptedRandom([0.0])  # only the first request fails
    request = payment_request()

    receipt = await subject.ledger.post(request)

    assert subject.server.requests == [POST, lookup(subject, request), POST]
    assert (state.errors, state.posts) == (1, 1)
    assert receipt == LedgerReceipt(entry_id=state.entries[request.idempotency_key]["entry_id"])


async def test_an_entry_whose_answer_was_lost_is_found_not_posted_again(subject: HttpLedgerUnderTest) -> None:
    state = subject.server.state
    state.faults = Faults(drop_after_commit_rate=1.0)  # the entry is made, the answer never arrives
    request = payment_request()

    receipt = await subject.ledger.post(request)

    assert subject.server.requests == [POST, lookup(subject, request)]
    assert (state.posts, state.dropped) == (1, 1)
    assert receipt == LedgerReceipt(entry_id=state.entries[request.idempotency_key]["entry_id"], already_posted=True)


async def test_a_call_after_an_earlier_one_looks_the_entry_up_before_it_posts(subject: HttpLedgerUnderTest) -> None:
    """An earlier call (another process's, before a crash, a park or a retry) may have been committed
    with its answer lost: its posting's row says so, and the next call's first request is the lookup."""
    state = subject.server.state
    committed, never_made = payment_request("pay-1"), payment_request("pay-2", amount="9.00")
    state.faults = Faults(down_after_commit_seconds=3600)  # it commits, answers 503 and stays down
    assert "503" in await unavailable(subject.ledger, committed)
    state.down_until = 0  # it answers again
    subject.server.requests.clear()

    found = await subject.ledger.post(replace(committed, maybe_posted=True))
    made = await subject.ledger.post(replace(never_made, maybe_posted=True))

    assert subject.server.requests == [lookup(subject, committed), lookup(subject, never_made), POST]
    assert found == LedgerReceipt(entry_id=state.entries[committed.idempotency_key]["entry_id"], already_posted=True)
    assert made == LedgerReceipt(entry_id=state.entries[never_made.idempotency_key]["entry_id"])
    assert (state.posts, state.reposted_after_drop) == (2, 0)


@pytest.mark.parametrize(("faults", "detail"), [
    (Faults(error_rate=1.0), "the ledger answered 503"),
    (Faults(timeout_rate=1.0, timeout_seconds=2 * TIMEOUT), f"the ledger did not answer within {TIMEOUT:g}s"),
])
async def test_a_ledger_failing_every_attempt_is_unavailable(subject: HttpLedgerUnderTest, faults: Faults,
                                                             detail: str) -> None:
    subject.server.state.faults = faults
    request = payment_request()

    assert detail in await unavailable(subject.ledger, request)

    # One try per attempt; each re-post waits on a lookup, and here no lookup answers.
    assert subject.server.requests == [POST] + [lookup(subject, request)] * (ATTEMPTS - 1)
    assert subject.server.state.entries == {}


async def test_a_ledger_that_cannot_be_reached_is_unavailable() -> None:
    http = HttpLedgers(attempts=ATTEMPTS, default_timeout=0.5, hosts=LOCAL_HOSTS)
    try:
        nobody = http.for_integration(http_integration(f"http://127.0.0.1:{free_port()}"))
        assert "the ledger could not be reached (ConnectError)" in await unavailable(nobody, payment_request())
    finally:
        await http.close()


async def test_a_system_asking_to_slow_down_is_waited_for_and_never_a_failure(subject: HttpLedgerUnderTest) -> None:
    """429 with Retry-After: paypost waits as asked and asks again, without counting it an attempt
    (six 429s against three attempts), and the entry is made once."""
    state = subject.server.state
    state.faults, state.rng = Faults(throttle_rate=0.5, retry_after_seconds=0.05), ScriptedRandom([0.0] * 6)
    request = payment_request()

    receipt = await subject.ledger.post(request)
    assert not receipt.already_posted and list(state.entries) == [request.idempotency_key]
    assert state.throttled == 6
    # Each request after a 429 came at least Retry-After later.
    gaps = [b - a for a, b in zip(state.request_times, state.request_times[1:], strict=False)][:6]
    assert min(gaps) >= 0.045
    assert subject.server.requests == [POST] + [lookup(subject, request)] * 6 + [POST]


async def test_a_system_that_keeps_asking_to_slow_down_sends_the_payment_back_not_failed(
    subject: HttpLedgerUnderTest, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("paypost.infra.ledgers.http.THROTTLED_FOR", 0.3)
    subject.server.state.faults = Faults(throttle_rate=1.0, retry_after_seconds=0.05)
    with pytest.raises(TransientFailure, match="kept answering 429"):  # back to its queue, never FAILED
        await subject.ledger.post(payment_request())
    assert subject.server.state.entries == {}


async def test_requests_to_a_system_are_spaced_by_its_rate_limit() -> None:
    http = HttpLedgers(attempts=ATTEMPTS, default_timeout=1.0, hosts=LOCAL_HOSTS)
    try:
        async with serve_reference_ledger() as server:
            ledger = http.for_integration(http_integration(server.url, max_requests_per_second=20))
            start = time.monotonic()
            await asyncio.gather(*(ledger.post(payment_request(f"rated-{i}")) for i in range(10)))
            assert len(server.state.entries) == 10
            # The k-th request to arrive left no earlier than k intervals of 50 ms after the start, however
            # late the network delivered any of them (a late first request must not hide a burst behind it).
            arrived = sorted(server.state.request_times)
            early = [k for k, at in enumerate(arrived) if at - start < k / 20 - 0.005]
            assert early == [], f"requests {early} arrived sooner than 20 a second allows"
    finally:
        await http.close()


async def test_a_system_at_an_address_paypost_must_not_call_is_refused_before_any_request() -> None:
    http = HttpLedgers(attempts=ATTEMPTS, default_timeout=0.5)  # nothing allowed beyond the rule
    try:
        async with serve_reference_ledger() as server:
            ledger = http.for_integration(http_integration(server.url))
            with pytest.raises(LoadFailure) as caught:
                await ledger.post(payment_request())
            assert caught.value.code is LoadErrorCode.INTEGRATION_NOT_CONFIGURED
            assert "https only" in (caught.value.detail or "")
            assert server.requests == []
    finally:
        await http.close()


@pytest.mark.api_only
async def test_saving_a_system_at_a_refused_address_is_400_naming_the_rule_and_saves_nothing(
    api: httpx.AsyncClient,
) -> None:
    for url, rule in (("https://10.1.2.3/ledger", "a private or reserved address"),
                      ("https://169.254.169.254/", "a cloud metadata address"),
                      ("http://93.184.216.34/ledger", "https only")):
        r = await api.put("/api/v1/practices/clinic-ssrf", json={
            "name": "S", "ledger": {"kind": "http", "base_url": url}, "enabled": True})
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == "refused_host" and rule in r.json()["error"]["message"]
    assert (await api.get("/api/v1/practices/clinic-ssrf")).status_code == 404


async def test_concurrent_posts_with_lost_answers_make_one_entry_each(subject: HttpLedgerUnderTest) -> None:
    state = subject.server.state
    state.faults = FLAKY
    requests = [payment_request(f"drop-{i}") for i in range(40)]

    outcomes = await asyncio.gather(*(subject.ledger.post(r) for r in requests), return_exceptions=True)

    assert state.dropped > 0  # the premise: some answers were lost after their entry was made
    receipts = {r.payment_id: o for r, o in zip(requests, outcomes, strict=True) if isinstance(o, LedgerReceipt)}
    failures = [o for o in outcomes if not isinstance(o, LedgerReceipt)]
    assert all(isinstance(f, LedgerUnreachable) for f in failures), failures
    assert len(receipts) >= 30  # a few may spend every attempt on faults: unanswered, never posted twice
    entries = {e.payment_id: e for e in await subject.entries()}
    assert len(entries) == len(state.entries)  # one entry per payment
    assert receipts.keys() <= entries.keys()
    assert {p: r.entry_id for p, r in receipts.items()} == {p: entries[p].entry_id for p in receipts}


# paypost posting to a practice whose ledger is of kind http.

@pytest.fixture
async def reference_ledger() -> AsyncIterator[ReferenceLedger]:
    async with serve_reference_ledger() as server:
        yield server


@pytest.fixture
async def http_practice(api: httpx.AsyncClient, reference_ledger: ReferenceLedger) -> str:
    r = await api.put("/api/v1/practices/clinic-h", json={
        "name": "H", "ledger": {"kind": "http", "base_url": reference_ledger.url, "timeout_seconds": 0.5},
        "enabled": True})
    assert r.status_code == 200, r.text
    return "clinic-h"


async def test_payment_loads_into_the_http_ledger(api: httpx.AsyncClient, upstream: Upstream, http_practice: str,
                                                  reference_ledger: ReferenceLedger) -> None:
    body = await upstream.payment(practice_id=http_practice)
    posting = await wait_status(api, http_practice, body["payment_id"], "LOADED")
    assert posting["ehr_patient_id"] == PATIENT
    [entry] = reference_ledger.state.entries.values()
    assert entry["payment_id"] == body["payment_id"] and entry["amount"] == "125.00"
    assert entry["idempotency_key"] == f"paypost:{http_practice}:{body['payment_id']}"


async def test_the_ledgers_reason_reaches_the_office(api: httpx.AsyncClient, upstream: Upstream, http_practice: str,
                                                     reference_ledger: ReferenceLedger) -> None:
    reference_ledger.state.faults = Faults(reject_patients=[CLOSED_PATIENT])
    body = await upstream.payment(practice_id=http_practice, ehr_patient_id=CLOSED_PATIENT)
    posting = await wait_status(api, http_practice, body["payment_id"], "FAILED")
    assert posting["load_error"]["code"] == "LEDGER_REJECTED"
    assert "account is closed for new entries" in posting["load_error"]["message"]
    assert reference_ledger.state.entries == {}


async def test_paypost_posts_each_payment_once_through_lost_answers(
    api: httpx.AsyncClient, upstream: Upstream, http_practice: str, reference_ledger: ReferenceLedger
) -> None:
    state = reference_ledger.state
    state.faults = FLAKY
    bodies = [await upstream.payment(practice_id=http_practice, payment_id=f"drop-{i}") for i in range(40)]
    for b in bodies:  # one that spends every attempt on faults waits for the system, then loads: never FAILED
        await wait_status(api, http_practice, b["payment_id"], "LOADED", timeout=30)
    assert state.dropped > 0  # the premise: some answers were lost after their entry was made
    loaded_ids = {b["payment_id"] for b in bodies}
    entries = list(state.entries.values())
    assert len(entries) == len({e["payment_id"] for e in entries})  # one entry per payment
    assert {e["payment_id"] for e in entries} >= loaded_ids


async def test_a_payment_for_an_unreachable_system_is_held_not_failed(api: httpx.AsyncClient,
                                                                      upstream: Upstream) -> None:
    r = await api.put("/api/v1/practices/clinic-x", json={
        "name": "X", "ledger": {"kind": "http", "base_url": f"http://127.0.0.1:{free_port()}"}, "enabled": True})
    assert r.status_code == 200
    body = await upstream.payment(practice_id="clinic-x")
    posting = await wait_status(api, "clinic-x", body["payment_id"], "HELD", timeout=15)  # held after 3 s here
    assert posting["load_error"] is None
    assert [a["action"] for a in posting["audit"]][-1] == "held"
    assert "could not be reached" in posting["audit"][-1]["detail"]
