"""Patient data stays out of logs, events and metrics on the paths where it is most likely to slip out
(contract section 12): a practice's system that answers with the patient's details, one that answers
garbage, a handler that crashes with patient data in its error, and a traceback's local variables.

The suite's log guard (tests/support/log_guard.py) watches every line; these tests also read what
was written themselves, so that they say what they check.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
import structlog
from prometheus_client import generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from paypost.bootstrap import Paypost
from paypost.domain.patient_ref import patient_ref, use_key
from paypost.infra.rabbit.watch import WatchedEvent, watch_events
from paypost.infra.runtime.logging import processors
from paypost.infra.runtime.settings import Settings
from tests.support import canaries
from tests.support.api_calls import wait_status
from tests.support.http_server import serve_asgi
from tests.support.upstream import Upstream
from tests.support.waits import wait_for

pytestmark = pytest.mark.integration

TEXT_PATIENT = "EHR-TEXT"  # the system refuses this patient's entries, quoting the patient
GARBAGE_PATIENT = "EHR-GARBAGE"  # and answers garbage for this one
GARBAGE = b"\xff\xfe<html>" + canaries.MEMO.encode() + b" acct-1 \x00\x01 EHR-1</html>"


def _system() -> Starlette:
    """A practice's system that answers with the patient's details wherever it can."""

    async def entry(request: Request) -> Response:
        body = await request.json()
        if body["patient_id"] == TEXT_PATIENT:
            return JSONResponse({"error": {"message": canaries.SYSTEM_TEXT}}, status_code=422)
        if body["patient_id"] == GARBAGE_PATIENT:
            return Response(GARBAGE, status_code=400, media_type="text/html")
        return JSONResponse({"error": {"message": f"no patient {body['patient_id']}: {canaries.MEMO}"}},
                            status_code=404)

    async def lookup(_: Request) -> Response:
        return Response(status_code=404)

    async def alert(_: Request) -> Response:  # tasks and flags refused, quoting the patient
        return JSONResponse({"error": {"message": canaries.SYSTEM_TEXT}}, status_code=409)

    return Starlette(routes=[
        Route("/entries", entry, methods=["POST"]),
        Route("/entries/{key:path}", lookup, methods=["GET"]),
        Route("/tasks/{alert_id}", alert, methods=["PUT", "DELETE"]),
        Route("/patients/{patient}/flags/{alert_id}", alert, methods=["PUT", "DELETE"]),
    ])


@pytest.fixture
async def dashboard(settings: Settings, paypost: Paypost) -> AsyncIterator[asyncio.Queue[WatchedEvent]]:
    async with watch_events(settings.amqp_url, ["#"]) as events:
        yield events


async def drain(events: asyncio.Queue[WatchedEvent], settle: float = 1.0) -> list[WatchedEvent]:
    got = []
    while True:
        try:
            got.append(await asyncio.wait_for(events.get(), timeout=settle))
        except TimeoutError:
            return got


def _metrics() -> str:
    return generate_latest().decode()


async def test_a_system_answering_with_patient_text_or_garbage_names_no_patient_in_logs_events_or_metrics(
    api: httpx.AsyncClient, upstream: Upstream, dashboard: asyncio.Queue[WatchedEvent],
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with serve_asgi(_system(), log_level="critical") as url:
        r = await api.put("/api/v1/practices/clinic-h", json={
            "name": "Clinic H", "ledger": {"kind": "http", "base_url": url}, "enabled": True})
        assert r.status_code == 200, r.text
        # A mapped account: its flag goes to the system (which refuses it, quoting the patient).
        r = await api.put("/api/v1/practices/clinic-h/patient-accounts/acct-flag/mapping",
                          json={"ehr_patient_id": TEXT_PATIENT})
        assert r.status_code == 200, r.text
        text = await upstream.payment(practice_id="clinic-h", patient_account_id="acct-flag", ehr_patient_id=None)
        garbage = await upstream.payment(practice_id="clinic-h", patient_account_id="acct-g",
                                         ehr_patient_id=GARBAGE_PATIENT)
        unknown = await upstream.payment(practice_id="clinic-h", patient_account_id="acct-u", ehr_patient_id="EHR-404")
        unmapped = await upstream.payment(practice_id="clinic-h", patient_account_id="acct-n", ehr_patient_id=None)
        rows = {p["payment_id"]: await wait_status(api, "clinic-h", p["payment_id"], "FAILED")
                for p in (text, garbage, unknown, unmapped)}
        # The office's row keeps what the system said, the patient's id with it...
        assert canaries.SYSTEM_TEXT in rows[text["payment_id"]]["load_error"]["message"]
        assert "EHR-404" in rows[unknown["payment_id"]]["load_error"]["message"]
        # ... while paypost tries to put the office task and the patient flag there, and is refused.
        alerts = await wait_for(lambda: _delivery_failed(api), timeout=15)
        assert {a["kind"] for a in alerts} == {"task", "patient"}
        assert any(canaries.SYSTEM_TEXT in a["delivery_error"] for a in alerts)  # kept for the office
        events = await drain(dashboard)

    failed = [e for e in events if e.routing_key.startswith("posting.failed.clinic-h.")]
    assert {e.body["payment_id"] for e in failed} == set(rows)
    assert {e.body["load_error"]["code"] for e in failed} == {"LEDGER_REJECTED", "PATIENT_NOT_FOUND",
                                                               "PATIENT_NOT_MAPPED"}
    assert [e for e in events if e.routing_key.startswith("alert.opened.clinic-h.patient")]
    for event in events:
        assert canaries.found(orjson.dumps(event.body).decode()) == [], event.body
        assert "patient_account_id" not in event.body and "ehr_patient_id" not in event.body
    written = capsys.readouterr()
    assert canaries.found(written.out + written.err) == []
    assert "alert_not_delivered" in written.out  # the refusal was logged: by its code, nothing more
    assert canaries.found(_metrics()) == []


async def _delivery_failed(api: httpx.AsyncClient) -> list[dict[str, Any]]:
    items = (await api.get("/api/v1/alerts", params={"practice_id": "clinic-h"})).json()["items"]
    failed = [a for a in items if a.get("delivery_error")]
    return failed if len({a["kind"] for a in failed}) == 2 else []


async def test_a_handler_that_crashes_with_patient_data_in_its_error_logs_its_traceback_without_it(
    paypost: Paypost, upstream: Upstream, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    crashed = asyncio.Event()

    async def crash(practice_id: str, patient_account_id: str, ehr_patient_id: str, *_: Any) -> None:
        memo = canaries.MEMO  # a local variable a traceback with locals would show
        crashed.set()
        raise ValueError(f"cannot map {patient_account_id} to {ehr_patient_id}: {memo}")

    monkeypatch.setattr(paypost.mapping_store, "put", crash)
    await upstream.send("patient.mapping.updated", {
        "event_id": str(uuid.uuid4()), "practice_id": "clinic-a", "patient_account_id": canaries.ACCOUNT,
        "ehr_patient_id": canaries.PATIENT})
    await asyncio.wait_for(crashed.wait(), timeout=10)
    written = await wait_for(lambda: _logged(capsys, "apply_gave_up"))
    assert "Traceback" in written and "ValueError" in written and "in crash" in written  # the frames are kept
    assert canaries.found(written) == []
    assert canaries.found(_metrics()) == []
    monkeypatch.undo()  # the redelivery now maps it, and the test ends with nothing in flight


_seen_output: list[str] = []


async def _logged(capsys: pytest.CaptureFixture[str], event: str) -> str | None:
    written = capsys.readouterr()
    _seen_output.append(written.out + written.err)
    everything = "".join(_seen_output)
    return everything if event in everything else None


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_a_traceback_is_structured_without_locals_or_a_quoting_message_in_every_format(
    fmt: str, capsys: pytest.CaptureFixture[str],
) -> None:
    before = structlog.get_config()
    structlog.configure(processors=processors(fmt), logger_factory=structlog.PrintLoggerFactory(),
                        cache_logger_on_first_use=False)
    log = structlog.get_logger("paypost.test")

    def load(memo: str) -> None:
        account = canaries.ACCOUNT  # noqa: F841 - a local variable a traceback with locals would show
        raise KeyError(memo)

    try:
        try:
            load(canaries.MEMO)
        except KeyError:
            log.exception("load_crashed", posting="clinic-a/pay-1")
        written = capsys.readouterr().out
    finally:
        structlog.configure(**before)
    assert canaries.found(written) == []
    assert "KeyError" in written and "load" in written
    if fmt == "json":
        line = orjson.loads(written)
        frames = line["exception"][0]["frames"]
        assert [f["name"] for f in frames][-1] == "load" and all("locals" not in f for f in frames)
        assert "withheld" in line["exception"][0]["exc_value"]


def test_a_patient_ref_tells_accounts_apart_without_naming_them() -> None:
    use_key(b"k" * 32)
    first = patient_ref("clinic-a", canaries.ACCOUNT)
    assert first == patient_ref("clinic-a", canaries.ACCOUNT)
    assert first != patient_ref("clinic-a", "acct-2") and first != patient_ref("clinic-b", canaries.ACCOUNT)
    assert canaries.found(first) == [] and first.startswith("pr_")
    use_key(b"j" * 32)
    assert patient_ref("clinic-a", canaries.ACCOUNT) != first  # keyed: without the key, no guess is checked
    with pytest.raises(ValueError, match="32 bytes"):
        use_key(b"short")


async def test_a_mapping_entered_logs_the_patient_ref_not_the_account(
    api: httpx.AsyncClient, practice: str, capsys: pytest.CaptureFixture[str],
) -> None:
    r = await api.put(f"/api/v1/practices/{practice}/patient-accounts/{canaries.ACCOUNT}/mapping",
                      json={"ehr_patient_id": canaries.PATIENT})
    assert r.status_code == 200, r.text
    written = capsys.readouterr().out
    assert "mapping_updated" in written
    assert f"patient_ref={patient_ref(practice, canaries.ACCOUNT)}" in written
    assert canaries.found(written) == []


def test_the_unrouted_metric_takes_its_label_from_a_bounded_set() -> None:
    from paypost.handlers.metrics import UNROUTED_LABELS, unrouted_label

    assert unrouted_label("payment.posted", readable=True) == "payment.posted"
    assert unrouted_label(f"payment.posted.{canaries.ACCOUNT}", readable=True) == "other"
    assert unrouted_label(canaries.MEMO, readable=False) == "unknown"
    assert {"payment.posted", "payment.refunded"} <= UNROUTED_LABELS
