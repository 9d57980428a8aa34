"""Outcome events for dashboards, alerts, and reconciliation of merchant transfers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from paypost.bootstrap import Paypost
from paypost.domain.errors import TransientFailure
from paypost.domain.ports.events import Publish
from paypost.infra.rabbit.broker import PUBLISHERS, Amqp
from paypost.infra.rabbit.watch import WatchedEvent, watch_events
from paypost.infra.runtime.settings import Settings
from tests.support.api_calls import wait_status
from tests.support.upstream import Upstream
from tests.support.waits import drain, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
async def dashboard(settings: Settings, paypost: object) -> AsyncIterator[asyncio.Queue[WatchedEvent]]:
    async with watch_events(settings.amqp_url, ["#"]) as events:
        yield events


async def test_a_failure_dashboard_sees_each_failure_exactly_once(
    settings: Settings, api: httpx.AsyncClient, upstream: Upstream, practice: str
) -> None:
    async with watch_events(settings.amqp_url, ["posting.failed.#"]) as failures:
        failing = []
        variants: list[dict[str, Any]] = [{"ehr_patient_id": None}, {"ehr_patient_id": "EHR-404"},
                                          {"currency": "EUR"}, {"practice_id": "clinic-none"}]
        for i, fields in enumerate(variants * 2):
            body = await upstream.payment(payment_id=f"f-{i}", **fields)
            failing.append(body)
            await upstream.send("payment.posted", body)  # a duplicate delivery
        for _ in range(3):
            await upstream.payment()
        await upstream.raw("payment.posted", b"junk", message_id="junk-1")
        for body in failing:
            await wait_status(api, body["practice_id"], body["payment_id"], "FAILED")
        got = await drain(failures)

    by_payment: dict[str, list[WatchedEvent]] = {}
    for event in got:
        by_payment.setdefault(event.body["payment_id"], []).append(event)
    assert sorted(by_payment) == sorted([b["payment_id"] for b in failing] + ["junk-1"])
    for payment_id, events in by_payment.items():
        assert len(events) == 1, payment_id
        [event] = events
        code = event.body["load_error"]["code"]
        assert event.routing_key == f"posting.failed.{event.body['practice_id']}.{code}"
        assert event.body["load_status"] == "FAILED"
        assert event.body["event_id"] and event.body["occurred_at"]


async def test_events_for_every_outcome_on_their_routing_keys(
    api: httpx.AsyncClient, upstream: Upstream, practice: str, dashboard: asyncio.Queue[WatchedEvent]
) -> None:
    loaded = await upstream.payment()
    failed = await upstream.payment(ehr_patient_id=None, patient_account_id="acct-e")
    cleared = await upstream.payment(ehr_patient_id=None, patient_account_id="acct-f")
    await wait_status(api, practice, failed["payment_id"], "FAILED")
    await wait_status(api, practice, cleared["payment_id"], "FAILED")
    await api.post("/api/v1/postings/changes", json={"practice_id": practice,
                   "clear": [{"payment_id": cleared["payment_id"], "reason": "desk"}]})
    await api.put("/api/v1/practices/clinic-a/patient-accounts/acct-e/mapping", json={"ehr_patient_id": "EHR-1"})
    await wait_status(api, practice, failed["payment_id"], "LOADED")
    got = await drain(dashboard)

    keys = [(e.routing_key, e.body.get("payment_id")) for e in got]
    assert ("posting.loaded.clinic-a", loaded["payment_id"]) in keys
    assert ("posting.failed.clinic-a.PATIENT_NOT_MAPPED", failed["payment_id"]) in keys
    assert ("posting.retried.clinic-a", failed["payment_id"]) in keys
    assert ("posting.loaded.clinic-a", failed["payment_id"]) in keys
    assert ("posting.cleared.clinic-a", cleared["payment_id"]) in keys
    assert ("alert.opened.clinic-a.task", failed["payment_id"]) in keys
    assert ("alert.opened.clinic-a.patient", failed["payment_id"]) in keys
    assert ("alert.resolved.clinic-a.task", failed["payment_id"]) in keys
    assert ("alert.resolved.clinic-a.task", cleared["payment_id"]) in keys
    for event in got:
        assert {"event_id", "occurred_at", "practice_id"} <= set(event.body)
        if event.routing_key.startswith("posting."):
            assert {"payment_id", "load_status", "load_error"} <= set(event.body)


async def test_alerts_open_escalate_and_resolve_by_themselves(
    settings: Settings, api: httpx.AsyncClient, upstream: Upstream, practice: str
) -> None:
    from paypost.bootstrap import Paypost

    # A second paypost whose alerts escalate after half a second.
    fast = Paypost(settings.model_copy(update={"alert_escalate_after": 0.5}))
    await fast.start()
    try:
        async with watch_events(settings.amqp_url, ["alert.#"]) as alerts_feed:
            a = await upstream.payment(ehr_patient_id=None, patient_account_id="acct-al")
            b = await upstream.payment(ehr_patient_id=None, patient_account_id="acct-al")
            for body in (a, b):
                await wait_status(api, practice, body["payment_id"], "FAILED")

            async def escalated() -> list[dict[str, Any]] | None:
                r = await api.get("/api/v1/alerts", params={"practice_id": practice, "state": "open"})
                items = r.json()["items"]
                return items if len(items) == 3 and all(i["state"] == "escalated" for i in items) else None

            items = await wait_for(escalated, timeout=10)
            assert sorted(i["kind"] for i in items) == ["patient", "task", "task"]
            assert {i["payment_id"] for i in items if i["kind"] == "task"} == {a["payment_id"], b["payment_id"]}

            await api.put("/api/v1/practices/clinic-a/patient-accounts/acct-al/mapping",
                          json={"ehr_patient_id": "EHR-1"})
            for body in (a, b):
                await wait_status(api, practice, body["payment_id"], "LOADED")

            async def all_resolved() -> bool:
                r = await api.get("/api/v1/alerts", params={"practice_id": practice, "state": "open"})
                return bool(r.json()["items"] == [])

            await wait_for(all_resolved)
            resolved = (await api.get("/api/v1/alerts", params={"state": "resolved"})).json()["items"]
            assert len(resolved) == 3 and all(i["resolved_at"] for i in resolved)
            got = await drain(alerts_feed)
    finally:
        await fast.stop()
    kinds = sorted(e.routing_key for e in got)
    assert kinds.count("alert.opened.clinic-a.task") == 2
    assert kinds.count("alert.opened.clinic-a.patient") == 1
    assert kinds.count("alert.escalated.clinic-a.task") == 2
    assert kinds.count("alert.escalated.clinic-a.patient") == 1
    assert kinds.count("alert.resolved.clinic-a.task") == 2
    assert kinds.count("alert.resolved.clinic-a.patient") == 1


def settled(transfer: str, payments: list[str], refunds: list[str], gross: str, fees: str = "3.00") -> dict[str, Any]:
    from decimal import Decimal

    return {"event_id": str(uuid.uuid4()), "practice_id": "clinic-a", "merchant_transfer_id": transfer,
            "payment_ids": payments, "refund_ids": refunds, "gross_amount": gross, "fees_amount": fees,
            "net_amount": str(Decimal(gross) - Decimal(fees)), "currency": "USD",
            "settled_at": "2026-11-25T12:00:00+00:00"}


async def transfer(api: httpx.AsyncClient, merchant_transfer_id: str) -> dict[str, Any] | None:
    r = await api.get(f"/api/v1/transfers/clinic-a/{merchant_transfer_id}")
    return r.json() if r.status_code == 200 else None


async def test_transfer_turns_balanced_when_its_last_failure_is_fixed(
    api: httpx.AsyncClient, upstream: Upstream, practice: str, dashboard: asyncio.Queue[WatchedEvent]
) -> None:
    p1 = await upstream.payment(amount="100.00", merchant_transfer_id="MT-9")
    p2 = await upstream.payment(amount="50.00", merchant_transfer_id="MT-9", ehr_patient_id=None,
                                patient_account_id="acct-t")
    await wait_status(api, practice, p1["payment_id"], "LOADED")
    refund = await upstream.refund(payment_id=p1["payment_id"], amount="20.00")
    await wait_status(api, practice, refund["refund_id"], "LOADED")
    await wait_status(api, practice, p2["payment_id"], "FAILED")
    await upstream.send("transfer.settled", settled("MT-9", [p1["payment_id"], p2["payment_id"]],
                                                    [refund["refund_id"]], "130.00"))

    before = await wait_for(lambda: transfer(api, "MT-9"))
    assert before["expected"] == {"count": 3, "amount": "130.00"}
    assert before["loaded"] == {"count": 2, "amount": "80.00"}
    assert before["failed"] == {"count": 1, "amount": "50.00"}
    assert before["pending"]["count"] == 0
    assert before["variance"] == "50.00" and before["balanced"] is False
    assert before["fees_amount"] == "3.00"

    await api.put("/api/v1/practices/clinic-a/patient-accounts/acct-t/mapping", json={"ehr_patient_id": "EHR-2"})
    await wait_status(api, practice, p2["payment_id"], "LOADED")

    after = await wait_for(lambda: _balanced(api, "MT-9"))
    assert after["loaded"] == {"count": 3, "amount": "130.00"}
    assert after["variance"] == "0.00"
    events = [e for e in await drain(dashboard) if e.routing_key == "transfer.reconciled.clinic-a"]
    assert len(events) == 1 and events[0].body["merchant_transfer_id"] == "MT-9"


async def _balanced(api: httpx.AsyncClient, merchant_transfer_id: str) -> dict[str, Any] | None:
    t = await transfer(api, merchant_transfer_id)
    return t if t and t["balanced"] else None


async def test_a_transfer_that_arrives_before_its_payments_reconciles(
    api: httpx.AsyncClient, upstream: Upstream, practice: str
) -> None:
    await upstream.send("transfer.settled", settled("MT-early", ["e-1", "e-2"], [], "75.00"))
    early = await wait_for(lambda: transfer(api, "MT-early"))
    assert early["pending"]["count"] == 2 and early["not_received"] == ["e-1", "e-2"]
    assert early["balanced"] is False

    await upstream.payment(payment_id="e-1", amount="25.00")
    await upstream.payment(payment_id="e-2", amount="50.00", ehr_patient_id=None, patient_account_id="acct-e2")
    await wait_status(api, practice, "e-2", "FAILED")
    await api.post("/api/v1/postings/changes", json={"practice_id": practice,
                   "clear": [{"payment_id": "e-2", "reason": "posted by hand"}]})
    done = await wait_for(lambda: _balanced(api, "MT-early"))
    assert done["loaded"] == {"count": 1, "amount": "25.00"}
    assert done["cleared"] == {"count": 1, "amount": "50.00"}


@pytest.mark.api_only
async def test_unsettled_transfer_is_404(api: httpx.AsyncClient) -> None:
    r = await api.get("/api/v1/transfers/clinic-a/MT-none")
    assert r.status_code == 404 and "not settled" in r.json()["error"]["message"]


async def test_no_patient_detail_in_events_logs_or_errors(
    api: httpx.AsyncClient, upstream: Upstream, practice: str, dashboard: asyncio.Queue[WatchedEvent],
    capsys: pytest.CaptureFixture[str],
) -> None:
    canary = "Zelda Canaryperson DOB 1961-07-04"
    good = await upstream.payment(memo=canary)
    bad = await upstream.payment(memo=canary, ehr_patient_id=None)
    await upstream.raw("payment.posted", f'{{"memo": "{canary}", "amount": 5}}'.encode(), message_id="canary-bad")
    await wait_status(api, practice, good["payment_id"], "LOADED")
    await wait_status(api, practice, bad["payment_id"], "FAILED")
    await wait_for(lambda: api.get("/api/v1/postings/_unknown/canary-bad"))
    events = await drain(dashboard)
    assert events
    for event in events:
        assert "Canaryperson" not in str(event.body) and "1961-07-04" not in str(event.body)
    captured = capsys.readouterr()
    assert "Canaryperson" not in captured.out + captured.err
    rows = (await api.get("/api/v1/postings")).json()
    assert "Canaryperson" not in str(rows)


class BrokerLink:
    """The publisher paypost is handed: the real one, except that what ``refuses`` names is refused
    as a broker that went away refuses it."""

    def __init__(self, real: Publish) -> None:
        self.real = real
        self.refuses: Callable[[str, bytes], bool] = lambda routing_key, body: False

    async def __call__(self, exchange: str, routing_key: str, body: bytes, *, message_id: str,
                       headers: dict[str, object] | None = None, broadcast: bool = False) -> None:
        if self.refuses(routing_key, body):
            raise TransientFailure("the broker is not reachable: injected")
        await self.real(exchange, routing_key, body, message_id=message_id, headers=headers, broadcast=broadcast)


class TestAnOutcomeWhoseEventsTheBrokerRefused:
    """paypost is handed a publisher that refuses some events (``BrokerLink``), as a broker that
    went away between a durable outcome and its event would."""

    @pytest.fixture
    async def link(self, settings: Settings) -> AsyncIterator[BrokerLink]:
        amqp = Amqp(settings.amqp_url)
        real = PUBLISHERS[settings.publish_path](amqp)
        try:
            yield BrokerLink(real)
        finally:
            await real.close()
            await amqp.close()

    @pytest.fixture
    def paypost_adapters(self, link: BrokerLink) -> dict[str, Any]:
        return {"publish": link}

    async def test_an_outcome_whose_events_could_not_be_sent_is_announced_when_its_delivery_comes_back(
        self, link: BrokerLink, api: httpx.AsyncClient, upstream: Upstream, practice: str,
        dashboard: asyncio.Queue[WatchedEvent],
    ) -> None:
        """The broker goes away between a durable outcome and its event: the batch is handled again
        (or redelivered) and finds the posting already FAILED or LOADED. Its event, the office task
        and the patient flag must still follow, once."""
        refused: list[str] = []

        def broker_blip(routing_key: str, body: bytes) -> bool:
            if routing_key.startswith(("posting.failed.", "posting.loaded.")) and b'"blip-' in body:
                key = routing_key.split(".")[1] + body.decode()[body.decode().index('"payment_id"'):][:40]
                if key not in refused:
                    refused.append(key)
                    return True
            return False

        link.refuses = broker_blip
        failing = await upstream.payment(payment_id="blip-failed", ehr_patient_id=None, patient_account_id="acct-blip")
        loading = await upstream.payment(payment_id="blip-loaded")
        await wait_status(api, practice, failing["payment_id"], "FAILED")
        await wait_status(api, practice, loading["payment_id"], "LOADED")
        got = await drain(dashboard, settle=1.5)

        assert len(refused) == 2  # each outcome's first event was refused
        keys = [(e.routing_key, e.body.get("payment_id")) for e in got]
        assert keys.count(("posting.failed.clinic-a.PATIENT_NOT_MAPPED", "blip-failed")) == 1
        assert keys.count(("posting.loaded.clinic-a", "blip-loaded")) == 1
        assert keys.count(("alert.opened.clinic-a.task", "blip-failed")) == 1
        assert keys.count(("alert.opened.clinic-a.patient", "blip-failed")) == 1
        alerts = (await api.get("/api/v1/alerts", params={"practice_id": practice, "state": "open"})).json()["items"]
        assert sorted(a["kind"] for a in alerts if a.get("payment_id") == "blip-failed"
                      or a.get("patient_account_id") == "acct-blip") == ["patient", "task"]


    async def test_a_dead_lettered_failure_whose_events_could_not_be_sent_is_announced_when_handled_again(
        self, link: BrokerLink, api: httpx.AsyncClient, upstream: Upstream, practice: str,
        dashboard: asyncio.Queue[WatchedEvent],
    ) -> None:
        """A payment its consumer never finished reaches the dead-letter queue and becomes FAILED there.
        If the broker refuses that failure's event once, handling the message again must still send
        the event, the office task and the patient flag, once each."""
        from tests.support.payloads import payment_body

        refused: list[str] = []

        def broker_blip(routing_key: str, body: bytes) -> bool:
            if routing_key.startswith("posting.failed.") and b'"dl-blip"' in body and not refused:
                refused.append(routing_key)
                return True
            return False

        link.refuses = broker_blip
        body = payment_body(payment_id="dl-blip", patient_account_id="acct-dl")
        death = {"x-death": [{"reason": "delivery_limit", "queue": "paypost.postings", "count": 21}]}
        # As the broker dead-letters it: through the dead-letter exchange, with its own routing key.
        await upstream.send("payment.posted", body, headers=death, exchange="paypost.dead-letter")
        row = await wait_status(api, practice, "dl-blip", "FAILED")
        assert row["load_error"]["code"] == "LEDGER_UNAVAILABLE"
        got = await drain(dashboard, settle=1.5)

        assert refused == ["posting.failed.clinic-a.LEDGER_UNAVAILABLE"]
        keys = [(e.routing_key, e.body.get("payment_id")) for e in got]
        assert keys.count(("posting.failed.clinic-a.LEDGER_UNAVAILABLE", "dl-blip")) == 1
        assert keys.count(("alert.opened.clinic-a.task", "dl-blip")) == 1
        assert keys.count(("alert.opened.clinic-a.patient", "dl-blip")) == 1


    async def test_an_outcome_one_worker_could_not_announce_is_announced_by_the_worker_that_gets_it_next(
        self, link: BrokerLink, paypost: Paypost, settings: Settings, upstream: Upstream, practice: str,
        dashboard: asyncio.Queue[WatchedEvent],
    ) -> None:
        """Workers keep no state of their own: a worker whose broker link refuses the failure's event
        marks the posting as owing it; stopped, its delivery goes to another worker, which announces it
        (the event, the office task and the patient flag, once) and clears the mark."""
        def refused(routing_key: str, body: bytes) -> bool:
            return routing_key.startswith("posting.failed.") and b'"xw-1"' in body

        link.refuses = refused
        await upstream.payment(payment_id="xw-1", ehr_patient_id=None, patient_account_id="acct-xw")

        async def marked() -> bool:
            doc = await paypost.collections.postings.find_one({"_id": f"{practice}/xw-1"})
            return doc is not None and doc.get("announcement_owed") == "failed"

        await wait_for(marked, timeout=20)
        await paypost.stop()  # its unsettled delivery goes back to the queue
        other = Paypost(settings, retry_seconds=10)
        await other.start()
        try:
            async def cleared() -> bool:
                doc = await other.collections.postings.find_one({"_id": f"{practice}/xw-1"})
                return doc is not None and "announcement_owed" not in doc

            await wait_for(cleared, timeout=30)
            got = await drain(dashboard, settle=1.5)
        finally:
            await other.stop()
        keys = [(e.routing_key, e.body.get("payment_id")) for e in got]
        assert keys.count(("posting.failed.clinic-a.PATIENT_NOT_MAPPED", "xw-1")) == 1
        assert keys.count(("alert.opened.clinic-a.task", "xw-1")) == 1
        assert keys.count(("alert.opened.clinic-a.patient", "xw-1")) == 1
