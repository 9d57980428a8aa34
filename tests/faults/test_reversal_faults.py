"""kill -9 between a reversal's ledger entry and its outcome (contract section 10): the practice's
system has committed each return's entry and not answered yet when paypost is killed. After the
restart each return is delivered again, found in the system by its key, and LOADED: one entry per
return, counted once against its payment, one task and one flag each."""

from __future__ import annotations

import signal
import uuid
from collections import Counter
from decimal import Decimal

import pytest

from paypost.infra.mongo.database import Collections
from paypost.infra.runtime.settings import Settings
from paypost.local.reference_ledger import Faults
from tests.faults.test_practice_system import PRACTICE, on_the_system, until
from tests.support.faults import Flow, scale, until_final
from tests.support.ledgers import PATIENT, serve_reference_ledger
from tests.support.payloads import payment_body
from tests.support.processes import GuardedProcess
from tests.support.waits import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.faults]


async def test_kill_9_between_a_reversals_entry_and_its_outcome(settings: Settings, store: Collections) -> None:
    n = scale(20)
    async with serve_reference_ledger() as system:
        await on_the_system(store, system, timeout_seconds=30)
        worker = GuardedProcess(settings.amqp_url, settings.mongodb_uri, settings.mongodb_db)
        worker.env["PAYPOST_LEDGER_ALLOWED_HOSTS"] = "127.0.0.0/8"
        await worker.start()
        try:
            payments = [payment_body(payment_id=f"p-{i}", ehr_patient_id=PATIENT, amount="100.00",
                                     patient_account_id=f"acct-{i}") for i in range(n)]
            returns: list[dict[str, object]] = [
                {"event_id": str(uuid.uuid4()), "practice_id": PRACTICE, "return_id": f"r-{i}", "payment_id": f"p-{i}",
                 "amount": "60.00", "currency": "USD", "return_code": "R01", "occurred_at": "2026-11-26T10:00:00+00:00"}
                for i in range(n)]
            async with Flow(worker.env["PAYPOST_AMQP_URL"]) as flow:
                for body in payments:
                    await flow.publish(body)
                await until_final(store, [f"p-{i}" for i in range(n)], timeout=120)
                system.state.faults = Faults(hang_after_commit_kinds=["return"], hang_seconds=120)
                for body in returns:
                    await flow.publish(body, routing_key="payment.returned")

                def committed() -> int:
                    return sum(1 for e in system.state.entries.values() if e.get("kind") == "return")

                await until(lambda: committed() >= 1, timeout=60)
                # The premise: entries made, no outcome written for them.
                in_flight = await store.postings.count_documents(
                    {"payment_id": {"$regex": "^r-"}, "load_status": "LOADED"})
                assert worker.proc is not None
                worker.proc.send_signal(signal.SIGKILL)
                worker.proc.wait()
                at_kill = committed()
                assert at_kill >= 1 and in_flight < n
                system.state.faults = Faults()
                await worker.start()
                await until_final(store, [f"r-{i}" for i in range(n)], timeout=180)
        finally:
            worker.stop()

    ids = [f"r-{i}" for i in range(n)]
    rows = {d["payment_id"]: d async for d in store.postings.find({"payment_id": {"$in": ids}})}
    assert Counter(d["load_status"] for d in rows.values()) == Counter({"LOADED": n})
    per_return = Counter(e["reversal_id"] for e in system.state.entries.values() if e.get("kind") == "return")
    assert per_return == Counter(dict.fromkeys(ids, 1))  # no second entry after the restart
    # Each counted once against its payment: 60.00 of 100.00 taken, never twice.
    async for payment in store.postings.find({"payment_id": {"$in": [f"p-{i}" for i in range(n)]}}):
        assert payment["reversed_total"] == Decimal("60.00"), payment["payment_id"]
        assert [r["id"] for r in payment["reversals"]] == [f"r-{payment['payment_id'][2:]}"]

    async def alerts_settled() -> bool:
        return await store.alerts.count_documents({"reversal_id": {"$in": ids}}) == 2 * n

    await wait_for(alerts_settled, timeout=30)
    assert await store.alerts.count_documents({"reversal_id": {"$in": ids}, "kind": "task"}) == n
