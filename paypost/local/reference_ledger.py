"""A reference HTTP ledger for demos and tests, speaking paypost's ledger protocol.

It keeps entries in memory, one per ``Idempotency-Key``, and injects faults on demand through
``PUT /_faults``: ``latency_ms``, ``error_rate`` (5xx), ``timeout_rate`` (sleeps past the client's
timeout), ``drop_after_commit_rate`` (commits the entry, then drops the response),
``throttle_rate`` (429 with ``Retry-After: retry_after_seconds``), ``down_after_commit_seconds``
(commits the next entry, answers 503 and stays down that long: an outage that began after a commit)
and ``answer_after_commit_seconds`` (commits each entry and answers only that long after, or once
the fault is lifted: time for the caller to die in between). It answers patient searches
(``GET /patients?q=&limit=``, contract section 14) from the displays given with ``PUT /patients/{id}``
(``{display}``), unless ``search_offered`` is false (then 501, as a system without search).
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, FastAPI, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field


class Faults(BaseModel):
    latency_ms: float = Field(default=0, ge=0)
    error_rate: float = Field(default=0, ge=0, le=1)
    timeout_rate: float = Field(default=0, ge=0, le=1)
    timeout_seconds: float = Field(default=30, ge=0)
    drop_after_commit_rate: float = Field(default=0, ge=0, le=1)
    throttle_rate: float = Field(default=0, ge=0, le=1)  # answers 429 with Retry-After
    retry_after_seconds: float = Field(default=0.1, ge=0)
    reject_patients: list[str] = Field(default_factory=list)
    alerts_down: bool = False  # tasks and flags answered 503, entries as usual
    down_after_commit_seconds: float = Field(default=0, ge=0)  # once: commit, 503, down this long
    answer_after_commit_seconds: float = Field(default=0, ge=0)  # commit, then answer this late
    # Entries of these kinds are committed, then answered only after ``hang_seconds`` (a process
    # killed meanwhile dies between its entry and its outcome).
    hang_after_commit_kinds: list[str] = Field(default_factory=list)
    hang_seconds: float = Field(default=60, ge=0)
    search_offered: bool = True  # False: GET /patients answers 501, as a system without search


@dataclass
class Credentials:
    """What the reference ledger asks of a caller (contract section 7): a fixed bearer token, or
    OAuth2 client credentials exchanged at ``POST /oauth/token`` for tokens that expire."""

    bearer: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    token_lifetime: float = 300.0
    issued: list[str] = field(default_factory=list)  # every access token handed out
    valid: set[str] = field(default_factory=set)  # those still accepted (clear it to revoke them all)


@dataclass
class LedgerState:
    patients: set[str] = field(default_factory=set)
    # What the office recognises a patient by (a name, a date of birth), for GET /patients?q= (section 14).
    displays: dict[str, str] = field(default_factory=dict)
    searches: int = 0  # patient searches answered
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    posts: int = 0
    dropped: int = 0  # responses dropped after the entry was committed
    # The entries whose answer was lost: dropped, or 503 after the commit (down_after_commit_seconds).
    dropped_keys: set[str] = field(default_factory=set)
    reposted_after_drop: int = 0  # posts of an entry whose answer was lost (the lookup should find it first)
    # Every lookup and post of an entry as it arrived, before any fault: (GET or POST, idempotency key).
    entry_requests: list[tuple[str, str]] = field(default_factory=list)
    # Each entry: how many of ``entry_requests`` had arrived when it was committed (a request that
    # arrived earlier may be answered later: a slow POST commits after a lookup that found nothing).
    committed_after: dict[str, int] = field(default_factory=dict)
    errors: int = 0  # injected 5xx
    throttled: int = 0  # injected 429s
    request_times: list[float] = field(default_factory=list)  # when each request arrived (monotonic)
    faults: Faults = field(default_factory=Faults)
    credentials: Credentials | None = None  # None: no authentication asked
    manual: dict[str, dict[str, Any]] = field(default_factory=dict)  # entries posted by hand, by reference
    refused: int = 0  # requests refused for their credentials (401)
    down_until: float = 0.0  # monotonic time until which every request gets 503 (an outage on demand)
    # Office tasks and patient flags as the office sees them in its system (contract section 7).
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    flags: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # (patient_id, alert_id)
    alert_requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path) of each one made
    rng: random.Random = field(default_factory=lambda: random.Random(7))  # noqa: S311 - seeded faults, no secret


class Dropped(Exception):
    """The entry is committed; the response is dropped (the connection is cut)."""


def _ledger(request: Request) -> LedgerState:
    ledger: LedgerState = request.app.state.ledger
    return ledger


Ledger = Annotated[LedgerState, Depends(_ledger)]
Authorization = Annotated[str | None, Header()]
router = APIRouter()


def _unauthorised(ledger: LedgerState, authorization: str | None) -> JSONResponse | None:
    """401 unless the request carries what the ledger's credentials ask."""
    wanted = ledger.credentials
    if wanted is None:
        return None
    token = authorization[7:] if authorization and authorization.lower().startswith("bearer ") else None
    if token is not None and (token == wanted.bearer or token in wanted.valid):
        return None
    ledger.refused += 1
    return JSONResponse({"error": {"message": "unauthorized"}}, status_code=401,
                        headers={"WWW-Authenticate": "Bearer"})


async def _inject(ledger: LedgerState, authorization: str | None = None) -> JSONResponse | None:
    """Apply the faults set on the ledger: a delay, a timeout, or an error response to send instead."""
    f = ledger.faults
    ledger.request_times.append(time.monotonic())
    if ledger.down_until > time.monotonic():
        ledger.errors += 1
        return JSONResponse({"error": {"message": "down for maintenance"}}, status_code=503)
    if (refused := _unauthorised(ledger, authorization)) is not None:
        return refused
    if f.throttle_rate and ledger.rng.random() < f.throttle_rate:
        ledger.throttled += 1
        return JSONResponse({"error": {"message": "slow down"}}, status_code=429,
                            headers={"Retry-After": f"{f.retry_after_seconds:g}"})
    if f.latency_ms:
        await asyncio.sleep(f.latency_ms / 1000)
    if f.timeout_rate and ledger.rng.random() < f.timeout_rate:
        await asyncio.sleep(f.timeout_seconds)
    if f.error_rate and ledger.rng.random() < f.error_rate:
        ledger.errors += 1
        return JSONResponse({"error": {"message": "injected fault"}}, status_code=503)
    return None


@router.put("/_faults")
async def set_faults(faults: Faults, ledger: Ledger) -> Faults:
    ledger.faults = faults
    return faults


class OutageIn(BaseModel):
    seconds: float = Field(ge=0)


@router.put("/_outage")
async def set_outage(outage: OutageIn, ledger: Ledger) -> dict[str, float]:
    """Go down (every request 503) for ``seconds`` from now; 0 ends an outage at once."""
    ledger.down_until = time.monotonic() + outage.seconds
    return {"seconds": outage.seconds}


def _maybe_drop(ledger: LedgerState) -> None:
    """After a commit: cut the connection instead of answering, as often as the faults say."""
    if ledger.faults.drop_after_commit_rate and ledger.rng.random() < ledger.faults.drop_after_commit_rate:
        ledger.dropped += 1
        raise Dropped


async def _filed(ledger: LedgerState, authorization: str | None, method: str, path: str,
                 kept: dict[Any, dict[str, Any]], key: Any, body: dict[str, Any] | None) -> JSONResponse:
    """A task or a flag PUT (``body``) or DELETEd under ``key`` in ``kept``, as the office's system files it."""
    if (fault := await _inject(ledger, authorization)) is not None:
        return fault
    if ledger.faults.alerts_down:
        return JSONResponse({"error": {"message": "task list unavailable"}}, status_code=503)
    ledger.alert_requests.append((method, path))
    if body is None:
        if kept.pop(key, None) is None:
            return JSONResponse({"error": {"message": "no such alert"}}, status_code=404)
        answer, status = {}, 200
    else:
        status = 200 if key in kept else 201
        kept[key] = answer = body
    _maybe_drop(ledger)
    return JSONResponse(answer, status_code=status)


@router.put("/tasks/{alert_id}")
async def put_task(alert_id: str, request: Request, ledger: Ledger,
                   authorization: Authorization = None) -> JSONResponse:
    return await _filed(ledger, authorization, "PUT", f"/tasks/{alert_id}", ledger.tasks, alert_id,
                        await request.json())


@router.delete("/tasks/{alert_id}")
async def delete_task(alert_id: str, ledger: Ledger, authorization: Authorization = None) -> JSONResponse:
    return await _filed(ledger, authorization, "DELETE", f"/tasks/{alert_id}", ledger.tasks, alert_id, None)


@router.put("/patients/{patient_id}/flags/{alert_id}")
async def put_flag(patient_id: str, alert_id: str, request: Request, ledger: Ledger,
                   authorization: Authorization = None) -> JSONResponse:
    return await _filed(ledger, authorization, "PUT", f"/patients/{patient_id}/flags/{alert_id}", ledger.flags,
                        (patient_id, alert_id), await request.json())


@router.delete("/patients/{patient_id}/flags/{alert_id}")
async def delete_flag(patient_id: str, alert_id: str, ledger: Ledger,
                      authorization: Authorization = None) -> JSONResponse:
    return await _filed(ledger, authorization, "DELETE", f"/patients/{patient_id}/flags/{alert_id}", ledger.flags,
                        (patient_id, alert_id), None)


@router.get("/_alerts")
async def all_alerts(ledger: Ledger) -> dict[str, Any]:
    """The tasks and flags open in this system, as its office would see them."""
    return {"tasks": list(ledger.tasks.values()),
            "flags": [{"patient_id": p, **body} for (p, _), body in ledger.flags.items()]}


class PatientIn(BaseModel):
    display: str | None = Field(default=None, max_length=500)  # a name and date of birth, say


@router.put("/patients/{patient_id}")
async def put_patient(patient_id: str, ledger: Ledger, body: PatientIn | None = None) -> dict[str, str]:
    ledger.patients.add(patient_id)
    if body is not None and body.display:
        ledger.displays[patient_id] = body.display
    return {"patient_id": patient_id}


@router.get("/patients")
async def search_patients(ledger: Ledger, q: str = "", limit: int = 20,
                          authorization: Authorization = None) -> JSONResponse:
    """The patients whose id or display holds every word of ``q`` (any case), at most ``limit``."""
    if (fault := await _inject(ledger, authorization)) is not None:
        return fault
    if not ledger.faults.search_offered:
        return JSONResponse({"error": {"message": "no patient search here"}}, status_code=501)
    ledger.searches += 1
    words = q.casefold().split()
    found = [{"patient_id": p, "display": ledger.displays.get(p, "")} for p in sorted(ledger.patients)
             if words and all(w in f"{p} {ledger.displays.get(p, '')}".casefold() for w in words)]
    return JSONResponse({"items": found[:max(0, min(limit, 100))]})



@router.post("/oauth/token")
async def token(request: Request, ledger: Ledger) -> JSONResponse:
    """The client-credentials grant (RFC 6749 section 4.4), with the client's id and secret in the form."""
    # The form parsed here: FastAPI's own form parsing needs a package paypost does not otherwise use.
    if ledger.down_until > time.monotonic():
        return JSONResponse({"error": "temporarily_unavailable"}, status_code=503)
    form = {k: v[0] for k, v in parse_qs((await request.body()).decode(errors="replace")).items()}
    wanted = ledger.credentials
    if (wanted is None or form.get("grant_type") != "client_credentials" or wanted.client_id is None
            or form.get("client_id") != wanted.client_id or form.get("client_secret") != wanted.client_secret):
        return JSONResponse({"error": "invalid_client"}, status_code=401)
    issued = f"ref-{uuid.uuid4().hex}"
    wanted.issued.append(issued)
    wanted.valid.add(issued)
    return JSONResponse({"access_token": issued, "token_type": "Bearer", "expires_in": wanted.token_lifetime})


@router.put("/_manual/{reference}")
async def put_manual(reference: str, request: Request, ledger: Ledger) -> dict[str, Any]:
    """An entry the office posted by hand, under its reference (``{amount}``)."""
    body = await request.json()
    ledger.manual[reference] = {"entry_id": f"manual-{uuid.uuid4().hex[:8]}", "amount": str(body["amount"])}
    return ledger.manual[reference]


@router.get("/entries/by-reference/{reference}")
async def by_reference(reference: str, ledger: Ledger, authorization: Authorization = None) -> JSONResponse:
    if (fault := await _inject(ledger, authorization)) is not None:
        return fault
    entry = ledger.manual.get(reference)
    if entry is None:
        return JSONResponse({"error": {"message": "no entry by that reference"}}, status_code=404)
    return JSONResponse(entry)


@router.get("/entries/{key}")
async def get_entry(key: str, ledger: Ledger, authorization: Authorization = None) -> JSONResponse:
    ledger.entry_requests.append(("GET", key))
    if (fault := await _inject(ledger, authorization)) is not None:
        return fault
    entry = ledger.entries.get(key)
    if entry is None:
        return JSONResponse({"error": {"message": "no such entry"}}, status_code=404)
    return JSONResponse(entry)


@router.get("/_entries")
async def all_entries(ledger: Ledger) -> dict[str, Any]:
    return {"items": list(ledger.entries.values()), "posts": ledger.posts, "dropped": ledger.dropped,
            "errors": ledger.errors}


@router.post("/entries")
async def post_entry(request: Request, idempotency_key: Annotated[str, Header()], ledger: Ledger,
                     authorization: Authorization = None) -> JSONResponse:
    ledger.entry_requests.append(("POST", idempotency_key))
    if (fault := await _inject(ledger, authorization)) is not None:
        return fault
    body = await request.json()
    patient = str(body.get("patient_id"))
    if patient not in ledger.patients:
        return JSONResponse({"error": {"message": "no such patient"}}, status_code=404)
    if patient in ledger.faults.reject_patients:
        return JSONResponse({"error": {"message": "account is closed for new entries"}}, status_code=422)
    if (refused := _refuses_kind(body)) is not None:
        return JSONResponse({"error": {"message": refused}}, status_code=422)
    ledger.posts += 1
    if idempotency_key in ledger.entries:
        if idempotency_key in ledger.dropped_keys:
            ledger.reposted_after_drop += 1
        return JSONResponse(ledger.entries[idempotency_key], status_code=200)
    entry = {"entry_id": str(uuid.uuid4()), "idempotency_key": idempotency_key, **body}
    ledger.entries[idempotency_key] = entry
    ledger.committed_after[idempotency_key] = len(ledger.entry_requests)
    if (lost := await _after_commit(ledger, idempotency_key, body)) is not None:
        return lost
    try:
        _maybe_drop(ledger)
    except Dropped:
        ledger.dropped_keys.add(idempotency_key)
        raise
    return JSONResponse(entry, status_code=201)


async def _after_commit(ledger: Ledger, idempotency_key: str, body: dict[str, Any]) -> JSONResponse | None:
    """The faults between an entry's commit and its answer: a 503 (the answer lost, the system down
    for a while), a late answer, or a hang for entries of some kinds; None: answer now."""
    if down := ledger.faults.down_after_commit_seconds:
        ledger.faults = ledger.faults.model_copy(update={"down_after_commit_seconds": 0})  # once
        ledger.down_until = time.monotonic() + down
        ledger.dropped_keys.add(idempotency_key)
        ledger.errors += 1
        return JSONResponse({"error": {"message": "down for maintenance"}}, status_code=503)
    for _ in range(round(ledger.faults.answer_after_commit_seconds / 0.02)):  # in steps, to end when lifted
        if not ledger.faults.answer_after_commit_seconds:
            break
        await asyncio.sleep(0.02)
    if body.get("kind") in ledger.faults.hang_after_commit_kinds:
        await asyncio.sleep(ledger.faults.hang_seconds)
    return None


# What an entry may be (contract section 10): money in is positive, money back out negative. An
# entry without ``kind`` is a payment's or a refund's from a paypost before version 1.2.
MONEY_IN = frozenset({"payment", "dispute_won"})
MONEY_OUT = frozenset({"refund", "void", "return", "chargeback"})


def _refuses_kind(body: dict[str, Any]) -> str | None:
    kind = body.get("kind") or ("refund" if body.get("refund_id") else "payment")
    if kind not in MONEY_IN | MONEY_OUT:
        return f"unknown entry kind {str(kind)[:20]!r}"
    try:
        negative = str(body.get("amount", "")).startswith("-")
    except TypeError:
        return "amount is not a string"
    if negative != (kind in MONEY_OUT):
        return f"a {kind} entry must be {'negative' if kind in MONEY_OUT else 'positive'}"
    if kind in MONEY_OUT - {"refund"} and not body.get("reversal_id"):
        return f"a {kind} entry needs its reversal_id"
    return None


def create_reference_ledger(state: LedgerState | None = None) -> FastAPI:
    """The ledger as an app; ``state`` (a new one by default) is what its routes read and change."""
    app = FastAPI(title="paypost reference ledger")
    app.state.ledger = state or LedgerState()
    app.include_router(router)
    return app
