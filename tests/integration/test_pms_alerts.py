"""Office tasks and patient flags in the practice's system (contract section 7), through the alerts'
outbox: PUT when opened or escalated, DELETE when resolved, a flag waiting for its account's
mapping, none for ``tasks: false``, and one of each however often an answer is lost."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import httpx

from paypost.bootstrap import Paypost
from paypost.local.reference_ledger import Faults
from tests.support.api_calls import wait_status
from tests.support.ledgers import PATIENT, ReferenceLedger
from tests.support.upstream import Upstream
from tests.support.waits import wait_for

PMS = "clinic-tasks"
UNKNOWN_PATIENT = "EHR-NOBODY"  # not a patient of the reference system: PATIENT_NOT_FOUND


async def set_up(api: httpx.AsyncClient, system: ReferenceLedger, practice_id: str = PMS, **ledger: Any) -> str:
    r = await api.put(f"/api/v1/practices/{practice_id}", json={
        "name": "Tasks", "ledger": {"kind": "http", "base_url": system.url, "timeout_seconds": 0.5, **ledger},
        "enabled": True})
    assert r.status_code == 200, r.text
    return practice_id


async def alerts_of(api: httpx.AsyncClient, practice_id: str) -> list[dict[str, Any]]:
    r = await api.get("/api/v1/alerts", params={"practice_id": practice_id})
    assert r.status_code == 200, r.text
    return r.json()["items"]  # type: ignore[no-any-return]  # JSON of the shape the API documents


async def delivered(api: httpx.AsyncClient, practice_id: str, kind: str, delivery: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        found = [a for a in await alerts_of(api, practice_id) if a["kind"] == kind and a["delivery"] == delivery]
        return found[0] if found else None

    return await wait_for(check, timeout=10)  # type: ignore[no-any-return]  # the alert found


async def test_a_failure_puts_its_task_in_the_system_and_a_load_takes_it_back(
    api: httpx.AsyncClient, upstream: Upstream, system: ReferenceLedger,
) -> None:
    practice = await set_up(api, system)
    r = await api.put(f"/api/v1/practices/{practice}/patient-accounts/acct-t/mapping",
                      json={"ehr_patient_id": UNKNOWN_PATIENT})
    assert r.status_code == 200, r.text
    body = await upstream.payment(practice_id=practice, payment_id="t-1", patient_account_id="acct-t",
                                  ehr_patient_id=None, amount="80.00")
    await wait_status(api, practice, "t-1", "FAILED")
    task = await delivered(api, practice, "task", "sent")

    [put] = system.state.tasks.values()
    assert put == {"alert_id": task["alert_id"], "practice_id": practice, "payment_id": "t-1",
                   "title": "Payment t-1 did not load: PATIENT_NOT_FOUND", "detail": put["detail"],
                   "opened_at": put["opened_at"], "escalated": False}
    assert "80.00 USD" in put["detail"] and "acct-t" in put["detail"]
    # A flag on the patient's record in the system, under the practice-management id it was mapped to.
    flag = await delivered(api, practice, "patient", "sent")
    assert list(system.state.flags) == [(UNKNOWN_PATIENT, flag["alert_id"])]
    assert system.state.flags[(UNKNOWN_PATIENT, flag["alert_id"])]["patient_account_id"] == "acct-t"

    # The office corrects the mapping: the payment loads by itself, and both come out of the system.
    r = await api.put(f"/api/v1/practices/{practice}/patient-accounts/acct-t/mapping", json={"ehr_patient_id": PATIENT})
    assert r.status_code == 200, r.text
    await wait_status(api, practice, body["payment_id"], "LOADED")

    async def gone() -> bool:
        return not system.state.tasks and not system.state.flags

    await wait_for(gone, timeout=10)
    assert ("DELETE", f"/tasks/{task['alert_id']}") in system.state.alert_requests
    assert ("DELETE", f"/patients/{UNKNOWN_PATIENT}/flags/{flag['alert_id']}") in system.state.alert_requests


async def test_a_flag_waits_for_its_accounts_mapping_and_goes_when_it_is_entered(
    api: httpx.AsyncClient, upstream: Upstream, system: ReferenceLedger,
) -> None:
    practice = await set_up(api, system)
    await upstream.payment(practice_id=practice, payment_id="w-1", patient_account_id="acct-w", ehr_patient_id=None)
    await wait_status(api, practice, "w-1", "FAILED")
    await delivered(api, practice, "task", "sent")
    flag = await delivered(api, practice, "patient", "waiting_for_mapping")
    assert system.state.flags == {}  # the system files a flag under its own patient id: none known yet

    # Mapped to a patient the system does not know: the payment fails again, the flag stays open, and
    # now it can go, at once (not after the 30 s a waiting flag is looked at again).
    started = time.monotonic()
    r = await api.put(f"/api/v1/practices/{practice}/patient-accounts/acct-w/mapping",
                      json={"ehr_patient_id": UNKNOWN_PATIENT})
    assert r.status_code == 200, r.text

    async def filed() -> bool:
        return (UNKNOWN_PATIENT, flag["alert_id"]) in system.state.flags

    await wait_for(filed, timeout=10)
    assert time.monotonic() - started < 10


async def test_an_escalation_updates_the_task_in_the_system(
    api: httpx.AsyncClient, upstream: Upstream, system: ReferenceLedger, paypost: Paypost,
) -> None:
    practice = await set_up(api, system)
    await upstream.payment(practice_id=practice, payment_id="e-1", ehr_patient_id=UNKNOWN_PATIENT)
    task = await delivered(api, practice, "task", "sent")
    assert system.state.tasks[task["alert_id"]]["escalated"] is False
    an_hour_ago = paypost.clock() - timedelta(hours=1)
    await paypost.collections.alerts.update_many({"practice_id": practice}, {"$set": {"opened_at": an_hour_ago}})
    assert await paypost.reactions.escalate_due() >= 1

    async def escalated() -> bool:
        return bool(system.state.tasks[task["alert_id"]]["escalated"])

    await wait_for(escalated, timeout=10)
    assert len(system.state.tasks) == 1


async def test_tasks_false_keeps_tasks_and_flags_to_paypost(
    api: httpx.AsyncClient, upstream: Upstream, system: ReferenceLedger,
) -> None:
    practice = await set_up(api, system, tasks=False)
    await upstream.payment(practice_id=practice, payment_id="n-1", ehr_patient_id=UNKNOWN_PATIENT)
    await wait_status(api, practice, "n-1", "FAILED")
    await delivered(api, practice, "task", "not_sent")
    await delivered(api, practice, "patient", "not_sent")
    assert system.state.alert_requests == []


async def test_a_task_whose_answer_is_lost_after_the_system_filed_it_is_filed_once(
    api: httpx.AsyncClient, upstream: Upstream, system: ReferenceLedger,
) -> None:
    practice = await set_up(api, system, tasks=True)
    system.state.faults = Faults(drop_after_commit_rate=1.0)  # every answer lost once the system has filed it
    await upstream.payment(practice_id=practice, payment_id="d-1", ehr_patient_id=UNKNOWN_PATIENT)
    await wait_status(api, practice, "d-1", "FAILED")  # its entry refused (404) before anything was filed

    async def tried_again() -> bool:
        return sum(1 for m, p in system.state.alert_requests if m == "PUT" and p.startswith("/tasks/")) >= 2

    await wait_for(tried_again, timeout=15)  # the premise: filed, its answer lost, sent again
    system.state.faults = Faults()
    await delivered(api, practice, "task", "sent")
    assert len(system.state.tasks) == 1  # the same task, filed once however often it was sent


async def test_a_built_in_practices_alerts_are_written_not_sent_with_nothing_left_in_the_outbox(
    paypost: Paypost, api: httpx.AsyncClient, upstream: Upstream, practice: str,
) -> None:
    """No system to send them to (the built-in ledger): each change of a task or flag is written as
    delivered, "not sent", by that change's own write; the delivery round never claims it."""
    body = await upstream.payment(ehr_patient_id=None, patient_account_id="acct-ns")
    await wait_status(api, practice, body["payment_id"], "FAILED")
    alerts = paypost.collections.alerts
    outbox = ("pms_version", "pms_sent", "pms_due", "pms_state")

    async def both(version: int) -> list[tuple[Any, ...]] | None:
        docs = await alerts.find({"practice_id": practice}, sort=[("kind", 1)]).to_list(None)
        found = [(d["kind"], d["state"], *(d[f] for f in outbox)) for d in docs]
        return found if len(found) == 2 and all(f[2] == version for f in found) else None

    assert await wait_for(lambda: both(1)) == [("patient", "open", 1, 1, False, "not_sent"),
                                               ("task", "open", 1, 1, False, "not_sent")]
    r = await api.put(f"/api/v1/practices/{practice}/patient-accounts/acct-ns/mapping",
                      json={"ehr_patient_id": "EHR-1"})
    assert r.status_code in (200, 201), r.text
    await wait_status(api, practice, body["payment_id"], "LOADED")
    assert await wait_for(lambda: both(2)) == [("patient", "resolved", 2, 2, False, "not_sent"),
                                               ("task", "resolved", 2, 2, False, "not_sent")]
    assert await alerts.count_documents({"practice_id": practice, "pms_claim": {"$exists": True}}) == 0


WAITING = "Waiting for the practice's system"


async def payments_alerts(api: httpx.AsyncClient, practice_id: str) -> list[dict[str, Any]]:
    """The practice's alerts of its payments: an outage's own task (opened once paypost holds the
    practice) is not one of them."""
    return [a for a in await alerts_of(api, practice_id) if not a["alert_id"].startswith("outage:")]


async def tried(api: httpx.AsyncClient, practice_id: str, phrase: str) -> bool:
    """Whether the failed payment's task and flag were both tried, each saying ``phrase`` in its delivery error."""
    alerts = await payments_alerts(api, practice_id)
    return len(alerts) == 2 and all(a["delivery_error"] and phrase in a["delivery_error"] for a in alerts)


async def test_a_held_practices_tasks_and_flags_wait_for_its_system_and_go_when_it_is_released(
    api: httpx.AsyncClient, upstream: Upstream, system: ReferenceLedger,
) -> None:
    """While a practice's system is held (by hand here; failing, or held by paypost, the same), its
    tasks and flags are not sent, each in turn, to a system that is not answering: they wait, saying
    why, and go once it answers again or is released."""
    practice = await set_up(api, system)
    system.state.faults = Faults(alerts_down=True)  # entries answer; tasks and flags not yet
    r = await api.put(f"/api/v1/practices/{practice}/patient-accounts/acct-h/mapping",
                      json={"ehr_patient_id": UNKNOWN_PATIENT})
    assert r.status_code == 200, r.text
    await upstream.payment(practice_id=practice, payment_id="h-1", patient_account_id="acct-h", ehr_patient_id=None)
    await wait_status(api, practice, "h-1", "FAILED")

    await wait_for(lambda: tried(api, practice, ""), timeout=10)  # each tried, and refused
    r = await api.post(f"/api/v1/practices/{practice}/hold", json={"reason": "PMS upgrade tonight"})
    assert r.status_code == 200, r.text
    await wait_for(lambda: tried(api, practice, WAITING), timeout=15)  # looked at again: waiting
    system.state.faults = Faults()  # it would take them now; paypost does not ask while it is held
    # A window longer than the backoff (1 s, then 2 s) that would have sent them by now had they only
    # been refused: nothing happening is what is tested, so it is a fixed wait.
    await asyncio.sleep(3)
    assert [a["delivery"] for a in await alerts_of(api, practice)] == ["pending", "pending"]
    assert system.state.alert_requests == []  # nothing reached the system

    r = await api.post(f"/api/v1/practices/{practice}/release")
    assert r.status_code == 200, r.text
    task = await delivered(api, practice, "task", "sent")  # at once, not at the next look (30 s on)
    flag = await delivered(api, practice, "patient", "sent")
    assert list(system.state.tasks) == [task["alert_id"]]
    assert list(system.state.flags) == [(UNKNOWN_PATIENT, flag["alert_id"])]


async def test_tasks_and_flags_that_waited_through_an_outage_go_once_a_payment_loads_there_again(
    api: httpx.AsyncClient, upstream: Upstream, system: ReferenceLedger,
) -> None:
    """The same when paypost finds the system failing: its tasks and flags wait, and go as soon as a
    payment loads there again (the outage worker's), not at their next look 30 s on."""
    practice = await set_up(api, system)
    system.state.faults = Faults(alerts_down=True)
    r = await api.put(f"/api/v1/practices/{practice}/patient-accounts/acct-o/mapping",
                      json={"ehr_patient_id": UNKNOWN_PATIENT})
    assert r.status_code == 200, r.text
    await upstream.payment(practice_id=practice, payment_id="o-1", patient_account_id="acct-o", ehr_patient_id=None)
    await wait_status(api, practice, "o-1", "FAILED")
    await wait_for(lambda: tried(api, practice, ""), timeout=10)

    system.state.down_until = time.monotonic() + 3600  # now nothing answers: the next payment gets no answer
    await upstream.payment(practice_id=practice, payment_id="o-2", ehr_patient_id=PATIENT)
    await wait_for(lambda: tried(api, practice, WAITING), timeout=30)  # the system failing: they wait
    system.state.faults = Faults()
    system.state.down_until = 0.0  # it answers again: o-2 loads at the outage worker's next try
    await wait_status(api, practice, "o-2", "LOADED", timeout=20)

    async def sent() -> list[dict[str, Any]]:  # the failed payment's task and flag
        alerts = await payments_alerts(api, practice)
        return alerts if len(alerts) == 2 and all(a["delivery"] == "sent" for a in alerts) else []

    task, flag = sorted(await wait_for(sent, timeout=10), key=lambda a: a["kind"] != "task")  # not the 30 s look
    assert f"/tasks/{task['alert_id']}" in {path for method, path in system.state.alert_requests if method == "PUT"}
    assert (UNKNOWN_PATIENT, flag["alert_id"]) in system.state.flags
