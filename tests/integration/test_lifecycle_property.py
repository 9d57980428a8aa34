"""A Hypothesis stateful test of the posting life cycle, on the real MongoDB.

Random sequences of deliveries, duplicates, corrections, refunds, reversals (voids, returns,
chargebacks, disputes won and lost), retries, clears, mapping fixes, and the practice held and
released by hand. Throughout: at most one ledger entry per payment, refund or reversal, never both
CLEARED and posted, LOADED exactly when posted, nothing left in flight (but HELD while the
practice is held), the ledger's sums equal what LOADED says, and the sum of a payment's entries is
never below zero nor above the payment (contract section 10).

The broker is replaced here by direct calls (a replay goes straight to the posting service):
the broker paths have their own tests; this one is about the states and the database.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from paypost.domain.posting import KeptMessage
from paypost.handlers.messagebus import MessageBus
from paypost.handlers.operations import ClearRequest, Pacer, PostingOperations
from paypost.handlers.outages import OutageBoard, Outages, OutageWorker
from paypost.handlers.outcomes import OutcomeRecorder
from paypost.handlers.posting import PostingService
from paypost.handlers.reversals import Reversals
from paypost.infra.ledgers.builtin import BuiltinLedger, Ledgers
from paypost.infra.ledgers.http import HttpLedgers
from paypost.infra.mongo.alerts import MongoAlertStore
from paypost.infra.mongo.database import Collections, connect, ensure_indexes
from paypost.infra.mongo.directory import MongoMappingStore, MongoPracticeDirectory
from paypost.infra.mongo.outages import MongoOutageStore
from paypost.infra.mongo.posting_commands import MongoPostingCommands
from paypost.infra.mongo.postings import MongoPostingStore
from paypost.infra.mongo.reversals import MongoPaymentBalances
from paypost.producers.events import OutcomePublisher
from paypost.schemas.topics import ROUTING_KEY_HEADER
from tests.support.ledgers import builtin_entries
from tests.support.services import Services

pytestmark = pytest.mark.integration

PAYMENTS = [f"pay-{i}" for i in range(4)]
SEED = "pay-seed"  # loaded when each example starts
ACCOUNTS = ["acct-0", "acct-1"]
AMOUNTS = st.sampled_from(["10.00", "25.50", "99.99", "1.00"])


class _Alone:
    """One process: every lease is this one's."""

    async def hold(self, duty: str, ttl: float) -> bool:
        return True


def make_machine(mongodb_uri: str) -> type[RuleBasedStateMachine]:
    class Lifecycle(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.loop = asyncio.new_event_loop()
            self.client = connect(mongodb_uri)
            self.c = Collections(self.client[f"prop_{uuid.uuid4().hex[:10]}"])
            self.bodies: dict[str, dict[str, Any]] = {}
            self.refunds: list[str] = []  # refunds and reversals, in the order sent
            self.disputes: list[str] = []
            self.run(self._build())

        def run(self, coro: Any) -> Any:
            return self.loop.run_until_complete(coro)

        async def _build(self) -> None:
            await ensure_indexes(self.c)
            postings = MongoPostingStore(self.c)
            directory = MongoPracticeDirectory(self.c)
            self.mappings = MongoMappingStore(self.c)
            self.http = HttpLedgers(1, 1.0)
            ledgers = Ledgers(BuiltinLedger(self.c, directory), self.http)
            bus = MessageBus()  # what follows an outcome (events, alerts) is not this test's
            outage_store = MongoOutageStore(self.c)
            self.outages = Outages(outage_store, postings, MongoAlertStore(self.c),
                                   OutageBoard(outage_store, refresh_every=0), bus, OutcomePublisher(self._publish),
                                   hold_after=60, probe_every=30)
            self.service = PostingService(postings, directory, self.mappings, ledgers, OutcomeRecorder(postings, bus),
                                          64 * 1024, self.outages, Reversals(postings, MongoPaymentBalances(self.c)))
            self.worker = OutageWorker(self.outages, postings, self.service, _Alone())
            self.held = False
            self.ops = PostingOperations(MongoPostingCommands(self.c), self._publish, bus, Pacer(1e9))
            now = datetime.now(UTC)
            await directory.put_practice("clinic-p", "P", {"kind": "builtin"}, True, now)
            for ehr in ("EHR-0", "EHR-1"):
                await directory.register_patient("clinic-p", ehr, now)

        async def _publish(self, exchange: str, routing_key: str, body: bytes, *, message_id: str,
                           headers: dict[str, object] | None = None, broadcast: bool = False) -> None:
            if exchange == "" and headers:  # a replay into the intake queue: deliver it now
                await self.service.handle(KeptMessage(body, str(headers[ROUTING_KEY_HEADER]), message_id, headers))

        async def _deliver(self, routing_key: str, body: dict[str, Any]) -> None:
            await self.service.handle(KeptMessage(orjson.dumps(body), routing_key, body["event_id"], {}))

        def teardown(self) -> None:
            self.run(self.client.drop_database(self.c.db.name))
            self.run(self.http.close())
            self.run(self.client.close())
            self.loop.close()

        @initialize()
        def start(self) -> None:
            # One payment loaded from the start, beside the four drawn: the reversals have a payment
            # to take back from in most examples, not only in those that happened to load one.
            self.run(self._deliver("payment.posted", {
                "event_id": str(uuid.uuid4()), "practice_id": "clinic-p", "payment_id": SEED,
                "patient_account_id": "acct-1", "ehr_patient_id": "EHR-1", "amount": "99.99", "currency": "USD",
                "method": "ach", "occurred_at": "2026-11-25T09:00:00+00:00"}))

        @rule(i=st.integers(0, len(PAYMENTS) - 1), account=st.sampled_from(ACCOUNTS),
              ehr=st.sampled_from([None, "EHR-0", "EHR-404"]), amount=AMOUNTS)
        def deliver(self, i: int, account: str, ehr: str | None, amount: str) -> None:
            body = {"event_id": str(uuid.uuid4()), "practice_id": "clinic-p", "payment_id": PAYMENTS[i],
                    "patient_account_id": account, "amount": amount, "currency": "USD", "method": "card",
                    "occurred_at": "2026-11-25T10:00:00+00:00"}
            if ehr:
                body["ehr_patient_id"] = ehr
            self.bodies[PAYMENTS[i]] = body
            self.run(self._deliver("payment.posted", body))

        @rule(i=st.integers(0, len(PAYMENTS) - 1))
        def duplicate(self, i: int) -> None:
            if PAYMENTS[i] in self.bodies:
                self.run(self._deliver("payment.posted", self.bodies[PAYMENTS[i]]))

        @rule(i=st.integers(0, len(PAYMENTS) - 1), amount=AMOUNTS)
        def refund(self, i: int, amount: str) -> None:
            refund_id = f"ref-{len(self.refunds)}"
            self.refunds.append(refund_id)
            self.run(self._deliver("payment.refunded", {
                "event_id": str(uuid.uuid4()), "practice_id": "clinic-p", "refund_id": refund_id,
                "payment_id": PAYMENTS[i], "amount": amount, "currency": "USD",
                "occurred_at": "2026-11-25T10:00:00+00:00"}))

        def _reverse(self, routing_key: str, id_field: str, prefix: str, i: int, **fields: str) -> str:
            """A reversal of a LOADED payment when there is one (a payment not loaded is drawn too, by
            the refunds, and when none is loaded), so that most reversals are loaded, not waiting."""
            own = f"{prefix}-{len(self.refunds)}"
            self.refunds.append(own)
            loaded = sorted(self.run(self.c.postings.distinct(
                "payment_id", {"kind": "payment", "load_status": "LOADED"})))
            payment_id = loaded[i % len(loaded)] if loaded else PAYMENTS[i]
            self.run(self._deliver(routing_key, {
                "event_id": str(uuid.uuid4()), "practice_id": "clinic-p", id_field: own, "payment_id": payment_id,
                "occurred_at": "2026-11-26T10:00:00+00:00", **fields}))
            return own

        # A void takes all that is left: drawn less often than a return or a chargeback, so that
        # those load too, and take part of a payment with refunds beside them.
        @rule(i=st.integers(0, len(PAYMENTS) - 1), amount=AMOUNTS, code=st.sampled_from(["R01", "R02", "X9"]),
              kind=st.sampled_from(["return", "return", "chargeback", "chargeback", "void"]))
        def reverse(self, i: int, amount: str, code: str, kind: str) -> None:
            if kind == "void":
                self._reverse("payment.voided", "void_id", "void", i)
            elif kind == "return":
                self._reverse("payment.returned", "return_id", "ret", i, amount=amount, currency="USD",
                              return_code=code)
            else:
                self.disputes.append(self._reverse("payment.disputed", "dispute_id", "dsp", i, amount=amount,
                                                   currency="USD", reason="fraud"))

        @rule(j=st.integers(0, 3), outcome=st.sampled_from(["won", "lost"]))
        def close_dispute(self, j: int, outcome: str) -> None:
            if j < len(self.disputes):
                won = f"{self.disputes[j]}.won"
                if outcome == "won" and won not in self.refunds:
                    self.refunds.append(won)
                self.run(self._deliver("dispute.closed", {
                    "event_id": str(uuid.uuid4()), "practice_id": "clinic-p", "dispute_id": self.disputes[j],
                    "outcome": outcome, "occurred_at": "2026-11-27T10:00:00+00:00"}))

        @rule(ids=st.lists(st.sampled_from(PAYMENTS), min_size=1, max_size=3))
        def retry(self, ids: list[str]) -> None:
            self.run(self.ops.retry("clinic-p", ids + self.refunds[-1:], actor="prop", command_id=str(uuid.uuid4())))

        @rule(i=st.integers(0, len(PAYMENTS) - 1), reason=st.sampled_from(["", "posted by hand"]))
        def clear(self, i: int, reason: str) -> None:
            self.run(self.ops.clear("clinic-p", [ClearRequest(PAYMENTS[i], reason)], actor="prop",
                                    command_id=str(uuid.uuid4())))

        @rule(account=st.sampled_from(ACCOUNTS), ehr=st.sampled_from(["EHR-0", "EHR-1", "EHR-404"]))
        def fix_mapping(self, account: str, ehr: str) -> None:
            async def go() -> None:
                await self.mappings.put("clinic-p", account, ehr, "prop", datetime.now(UTC))
                await self.ops.heal_account("clinic-p", account, reason="mapping entered by prop")

            self.run(go())

        @rule()
        def hold(self) -> None:
            self.run(self.outages.hold_by_hand("clinic-p", "prop holds it", "prop"))
            self.held = True

        @rule()
        def release(self) -> None:
            async def go() -> None:
                await self.outages.release_by_hand("clinic-p", "prop")
                await self.worker.step("clinic-p", None)  # the background's next round, now

            self.run(go())
            self.held = False

        @rule()
        def refunds_heal(self) -> None:
            self.run(self.ops.heal_waiting_refunds())

        @invariant()
        def ledger_agrees_with_postings(self) -> None:
            async def check() -> None:
                entries = await builtin_entries(self.c)
                postings = {d["payment_id"]: d for d in await self.c.postings.find({}).to_list(None)}
                posted: dict[str, int] = {}
                for e in entries:
                    key = e.get("reversal_id") or e["refund_id"] or e["payment_id"]
                    posted[key] = posted.get(key, 0) + 1
                assert all(n == 1 for n in posted.values()), f"posted twice: {posted}"
                for pid, doc in postings.items():
                    status = doc["load_status"]
                    assert not (status == "CLEARED" and pid in posted), f"{pid} is CLEARED and posted"
                    assert (status == "LOADED") == (pid in posted), f"{pid} is {status}, posted={pid in posted}"
                    settled = ("LOADED", "FAILED", "CLEARED", *(("HELD",) if self.held else ()))
                    assert status in settled, f"{pid} left {status} (held: {self.held})"
                total_ledger = sum((e["amount"] for e in entries), Decimal(0))
                total_loaded = sum((d["amount"] if d["kind"] in ("payment", "dispute_won") else -d["amount"]
                                    for d in postings.values() if d["load_status"] == "LOADED"), Decimal(0))
                assert total_ledger == total_loaded
                # Refunds and reversals never take back more than the payment, nor a won dispute give
                # back more than was taken.
                for pid in [*PAYMENTS, SEED]:
                    payment = postings.get(pid)
                    mine = [e["amount"] for e in entries if e["payment_id"] == pid]
                    held = sum(mine, Decimal(0))
                    if payment is None or payment["load_status"] != "LOADED":
                        assert mine == [], f"{pid} is not loaded, yet has entries {mine}"
                        continue
                    assert Decimal(0) <= held <= payment["amount"], f"{pid}: {held} of {payment['amount']}"
                    assert payment["amount"] - payment.get("reversed_total", Decimal(0)) == held

            self.run(check())

    return Lifecycle


def test_posting_lifecycle_invariants(services: Services) -> None:
    machine = make_machine(services.mongodb_uri)
    machine.TestCase.settings = settings(max_examples=40, stateful_step_count=20, deadline=None,
                                         suppress_health_check=list(HealthCheck))
    machine.TestCase().runTest()
