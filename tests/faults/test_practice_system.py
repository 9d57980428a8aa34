"""The fault suite for the practice-management system (contract section 7): an outage, a system that
keeps asking to slow down, a kill while tasks and flags wait in the outbox, and answers lost after
the system filed a task. 0 payments lost or posted twice, 0 tasks or flags lost or doubled."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from paypost.bench.load import TOKEN
from paypost.bootstrap import Paypost
from paypost.infra.mongo.database import Collections
from paypost.infra.runtime.settings import Settings
from paypost.local.reference_ledger import Faults
from tests.support.faults import LOADED_MACHINE_TIMEOUT, Figures, Flow, account, scale, until_final
from tests.support.ledgers import PATIENT, ReferenceLedger, serve_reference_ledger
from tests.support.payloads import payment_body
from tests.support.processes import GuardedProcess
from tests.support.waits import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.faults]

PRACTICE = "clinic-a"


async def on_the_system(store: Collections, system: ReferenceLedger, **ledger: Any) -> None:
    await store.practices.update_one({"_id": PRACTICE}, {"$set": {"ledger": {
        "kind": "http", "base_url": system.url, "timeout_seconds": 2, **ledger}}})


async def none_due(store: Collections) -> bool:
    """Whether every alert's latest change has reached the system (the outbox is empty)."""
    return await store.alerts.count_documents({"pms_due": True}) == 0


async def _at_least(count: Callable[[], Any], n: int) -> int | None:
    found: int = await count()
    return found if found >= n else None


async def until(check: Callable[[], bool], timeout: float, interval: float = 0.2) -> None:
    async def checked() -> bool:
        return check()

    await wait_for(checked, timeout=timeout, interval=interval)


def entries_as_figures(system: ReferenceLedger) -> list[dict[str, Any]]:
    return [{"payment_id": e["payment_id"]} for e in system.state.entries.values()]


# Its own bounds: 80 s of flow, then up to 240 s for every payment to load (until_final's limit, which
# says what is left when it is passed); the suite's 300 s would cut it short of that on a slow day.
@pytest.mark.timeout(420)
async def test_the_system_down_for_90_seconds_while_2000_payments_flow(
    settings: Settings, store: Collections, report: list[Figures],
) -> None:
    """With the contract's defaults: held after 60 s, one payment tried every 30 s."""
    n = scale(2_000)
    async with serve_reference_ledger() as system:
        await on_the_system(store, system, tasks=False)
        app = Paypost(settings.model_copy(update={"ledger_hold_after": 60.0, "ledger_probe_every": 30.0}))
        await app.start()
        ids = [f"o-{i:05d}" for i in range(n)]
        try:
            system.state.down_until = time.monotonic() + 90
            async with Flow(settings.amqp_url) as flow:
                await flow.paced([payment_body(payment_id=pid, ehr_patient_id=PATIENT) for pid in ids], rate=n / 80)
            held = await store.postings.count_documents({"payment_id": {"$in": ids}, "load_status": "HELD"})
            # Released one at a time, in the order received: on a loaded run of CI (the tests took 30 min,
            # not 16) 1,400 of the 2,000 parked were loaded in 240 s, at about 7 a second.
            await until_final(store, ids, timeout=480)
        finally:
            await app.stop()
        order = [d["payment_id"] async for d in store.postings.find(
            {"payment_id": {"$in": ids}}, {"payment_id": 1}, sort=[("received_at", 1), ("_id", 1)])]
        outage_tasks = await store.alerts.find({"outage": True}).to_list(None)
        held_events = await store.postings.count_documents({"payment_id": {"$in": ids}, "audit.action": "held"})
    figures = await account(store, "the system down 90 s while 2,000 payments flow", ids,
                            ledger_entries=entries_as_figures(system))
    report.append(figures)
    assert (figures.lost, figures.double_posts, figures.pending, figures.failed) == (0, 0, 0, 0)
    # The premise: they were HELD once the outage passed 60 s, not FAILED. Counted from each posting's
    # trail: a count of HELD rows as the flow ended is a moment, which on busy cores fell in the middle
    # of the held practice's rows being parked one by one, or of their release.
    assert held_events > n / 3
    assert held_events >= held
    loaded_in = [e["payment_id"] for e in system.state.entries.values()]
    # In the order received; payments whose own first try was under way as the outage began may
    # come after those parked behind them (a handful, at its very start).
    out_of_order = [pid for pid, expected in zip(loaded_in, order, strict=True) if pid != expected]
    assert len(out_of_order) <= 10, out_of_order[:20]
    assert [(t["state"], t["practice_id"]) for t in outage_tasks] == [("resolved", PRACTICE)]  # one, resolved


async def test_a_system_answering_429_to_a_third_of_requests(
    settings: Settings, store: Collections, report: list[Figures],
) -> None:
    n = scale(1_000)
    async with serve_reference_ledger() as system:
        system.state.faults = Faults(throttle_rate=1 / 3, retry_after_seconds=0.05)
        await on_the_system(store, system, tasks=False)
        app = Paypost(settings)
        await app.start()
        ids = [f"s-{i}" for i in range(n)]
        try:
            async with Flow(settings.amqp_url) as flow:
                await asyncio.gather(*(flow.publish(payment_body(payment_id=pid, ehr_patient_id=PATIENT))
                                       for pid in ids))
            await until_final(store, ids, timeout=300)
        finally:
            await app.stop()
    figures = await account(store, "the system answers 429 to a third of requests", ids,
                            ledger_entries=entries_as_figures(system))
    report.append(figures)
    assert (figures.lost, figures.double_posts, figures.pending, figures.failed) == (0, 0, 0, 0)
    assert system.state.throttled > n / 10  # the premise: it kept asking to slow down


async def failing_with_alerts(store: Collections, worker: GuardedProcess, n: int) -> list[str]:
    """``n`` payments of ``n`` accounts, each mapped to a patient the system does not know: each
    fails PATIENT_NOT_FOUND with an office task and a patient flag."""
    async with httpx.AsyncClient(base_url=worker.base, headers={"Authorization": f"Bearer {TOKEN}"}) as api:
        for i in range(n):
            r = await api.put(f"/api/v1/practices/{PRACTICE}/patient-accounts/acct-{i}/mapping",
                              json={"ehr_patient_id": f"EHR-UNKNOWN-{i}"})
            assert r.status_code == 200, r.text
    ids = [f"t-{i}" for i in range(n)]
    async with Flow(worker.env["PAYPOST_AMQP_URL"]) as flow:
        await asyncio.gather(*(flow.publish(payment_body(payment_id=f"t-{i}", patient_account_id=f"acct-{i}",
                                                         ehr_patient_id=None)) for i in range(n)))
    await until_final(store, ids, timeout=120)
    return ids


async def test_paypost_killed_while_tasks_and_flags_wait_in_the_outbox(
    settings: Settings, store: Collections, report: list[Figures],
) -> None:
    n = scale(300)
    async with serve_reference_ledger() as system:
        system.state.faults = Faults(alerts_down=True)  # entries answer; tasks and flags wait
        await on_the_system(store, system, max_requests_per_second=150, timeout_seconds=LOADED_MACHINE_TIMEOUT)
        worker = GuardedProcess(settings.amqp_url, settings.mongodb_uri, settings.mongodb_db)
        worker.env["PAYPOST_LEDGER_ALLOWED_HOSTS"] = "127.0.0.0/8"
        await worker.start()
        kills = 0
        try:
            ids = await failing_with_alerts(store, worker, n)
            # Each FAILED write is followed by its task's and flag's opening: wait for the last of those.
            async def outbox() -> int:
                return await store.alerts.count_documents({"pms_due": True})

            waiting = await wait_for(lambda: _at_least(outbox, 2 * n), timeout=30, interval=0.2)
            system.state.faults = Faults()  # the task list answers again: they go, 150 requests a second
            await until(lambda: len(system.state.tasks) + len(system.state.flags) >= n, timeout=60, interval=0.02)
            assert worker.proc is not None
            worker.proc.send_signal(signal.SIGKILL)  # half of them filed, the rest in the outbox
            worker.proc.wait()
            kills += 1
            at_kill = len(system.state.tasks) + len(system.state.flags)
            await worker.start()
            await until(lambda: len(system.state.tasks) == n and len(system.state.flags) == n, timeout=120)
            await wait_for(lambda: none_due(store), timeout=60, interval=0.5)
        finally:
            worker.stop()
    puts = sum(1 for method, _ in system.state.alert_requests if method == "PUT")
    figures = await account(store, f"killed with {2 * n - at_kill} of {2 * n} tasks and flags in the outbox "
                            f"({puts - 2 * n} PUT again after the kill)", ids, ledger_entries=[])
    report.append(figures)
    assert waiting == 2 * n and kills == 1 and 0 < at_kill < 2 * n  # the premise
    assert (figures.lost, figures.failed) == (0, n)
    # Each task and flag in the system once, under its alert's id; none resolved, none left over.
    assert sorted(system.state.tasks) == sorted(f"task:{PRACTICE}:{pid}" for pid in ids)
    assert sorted(p for p, _ in system.state.flags) == sorted(f"EHR-UNKNOWN-{i}" for i in range(n))
    assert await store.alerts.count_documents({"pms_due": True}) == 0


async def test_the_system_drops_its_answer_after_filing_a_task(
    settings: Settings, store: Collections, report: list[Figures],
) -> None:
    n = scale(200)
    async with serve_reference_ledger() as system:
        system.state.faults = Faults(alerts_down=True)
        await on_the_system(store, system, timeout_seconds=LOADED_MACHINE_TIMEOUT)
        worker = GuardedProcess(settings.amqp_url, settings.mongodb_uri, settings.mongodb_db)
        worker.env["PAYPOST_LEDGER_ALLOWED_HOSTS"] = "127.0.0.0/8"
        await worker.start()
        try:
            ids = await failing_with_alerts(store, worker, n)
            system.state.faults = Faults(drop_after_commit_rate=0.5)  # half of all answers lost after filing
            await until(lambda: len(system.state.tasks) == n and len(system.state.flags) == n, timeout=120)
            await wait_for(lambda: none_due(store), timeout=120, interval=0.5)
        finally:
            worker.stop()
    figures = await account(store, f"answers lost after filing ({system.state.dropped} lost)", ids, ledger_entries=[])
    report.append(figures)
    assert system.state.dropped > n / 4  # the premise
    assert sorted(system.state.tasks) == sorted(f"task:{PRACTICE}:{pid}" for pid in ids)
    assert len(system.state.flags) == n

