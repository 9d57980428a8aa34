"""paypost's own ledgers (built-in and HTTP), set up for a test, with a way to read back what they hold.

The port's shared suite (``paypost.testing.ledger_suite``, the one shipped to adapter authors) runs
against each in tests/integration/test_ledger_port.py; the HTTP ledger's own tests
(tests/integration/test_http_ledger.py) use the reference server from here.
"""

from __future__ import annotations

import contextlib
import random
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from paypost.domain.model import LoadStatus, PostingKind
from paypost.domain.ports.ledgers import Ledger
from paypost.domain.posting import (
    PAYPOST_ACTOR,
    Attempt,
    AuditEntry,
    Integration,
    KeptMessage,
    LedgerEntryRequest,
    LedgerReceipt,
    Posting,
    PostingKey,
)
from paypost.infra.ledgers.builtin import BuiltinLedger, Ledgers
from paypost.infra.ledgers.hosts import HostPolicy
from paypost.infra.ledgers.http import HttpLedgers
from paypost.infra.mongo.database import LEDGER_ENTRY, Collections, Doc, connect, ensure_indexes
from paypost.infra.mongo.directory import MongoPracticeDirectory
from paypost.infra.mongo.postings import MongoPostingStore, entry_of
from paypost.local.reference_ledger import Faults, LedgerState, create_reference_ledger

# PATIENT and PRACTICE are re-exported: the suites of this package import them from here.
from paypost.testing.ledger_suite import PATIENT as PATIENT
from paypost.testing.ledger_suite import PRACTICE as PRACTICE
from paypost.testing.ledger_suite import HeldEntry, LedgerUnderTest
from tests.support.http_server import serve_asgi

# The reference server runs on this machine: its loopback address is allowed, as a platform allows its own.
LOCAL_HOSTS = HostPolicy(["127.0.0.0/8", "localhost"])
CLOSED_PATIENT = "EHR-CLOSED"  # known to the HTTP ledger, which refuses new entries for it


async def builtin_entries(c: Collections, **match: Any) -> list[Doc]:
    """The built-in ledger's entries matching ``match`` (an entry's fields: ``practice_id``,
    ``payment_id``, ``refund_id``, ...), wherever they are kept: in their postings' rows, or in
    ``ledger_entries`` (an earlier version's, or moved there by a purge)."""
    in_rows = {k if k == "practice_id" else f"{LEDGER_ENTRY}.{k}": v for k, v in match.items()}
    rows = [entry_of(d) async for d in c.postings.find({LEDGER_ENTRY: {"$exists": True}, **in_rows},
                                                       {LEDGER_ENTRY: 1, "practice_id": 1})]
    return rows + await c.ledger_entries.find(match).to_list(None)


class PostedWithItsRow:
    """The built-in ledger as the posting service posts to it: the entry a post gives back is written
    with its posting's LOADED row, by the row's key (``MongoPostingStore.insert_finished``, the
    service's first write of a posting); a post of an entry whose row exists finds it there."""

    def __init__(self, ledger: Ledger, collections: Collections) -> None:
        self._ledger = ledger
        self._rows = MongoPostingStore(collections)
        self._collections = collections

    async def post(self, request: LedgerEntryRequest) -> LedgerReceipt:
        receipt = await self._ledger.post(request)
        if receipt.entry is None:
            return receipt
        now = datetime.now(UTC)
        loaded = Posting(PostingKey(request.practice_id, request.posting_id), PostingKind(request.kind),
                         LoadStatus.LOADED, event_id=None, received_at=now, ehr_patient_id=request.ehr_patient_id,
                         amount=request.amount, currency=request.currency)
        if await self._rows.insert_finished(loaded, KeptMessage(b"{}", "payment.posted", None),
                                            AuditEntry(now, PAYPOST_ACTOR, "received"), Attempt(now, 0.0, "loaded"),
                                            receipt.entry_id, receipt.entry):
            return receipt
        row = await self._collections.postings.find_one({"_id": f"{request.practice_id}/{request.posting_id}"})
        assert row is not None
        return LedgerReceipt(row["ledger_entry_id"], already_posted=True)


class BuiltinLedgerUnderTest(LedgerUnderTest):
    """The built-in ledger on MongoDB, as paypost posts to it: through ``Ledgers.for_integration``,
    its entries written with their postings' rows."""

    def __init__(self, ledger: Ledger, collections: Collections) -> None:
        super().__init__(PostedWithItsRow(ledger, collections))
        self._collections = collections

    async def entries(self) -> list[HeldEntry]:
        docs = await builtin_entries(self._collections)
        return [HeldEntry(d["entry_id"], d["practice_id"], d["ehr_patient_id"], d["payment_id"], d["refund_id"],
                          d["amount"], d["currency"], d["kind"], d["reversal_id"]) for d in docs]

    def refusing(self, request: LedgerEntryRequest) -> tuple[LedgerEntryRequest, str]:
        # The built-in ledger keeps one currency per practice (USD unless set).
        return replace(request, currency="EUR"), "keeps USD"


@contextlib.asynccontextmanager
async def builtin_ledger(mongodb_uri: str, currency: str | None = None) -> AsyncIterator[BuiltinLedgerUnderTest]:
    """The built-in ledger in a database of its own, dropped afterwards; ``currency`` is the practice's
    ``ledger.currency`` setting (unset: USD)."""
    client = connect(mongodb_uri)
    collections = Collections(client[f"paypost_ledger_{uuid.uuid4().hex[:10]}"])
    http = HttpLedgers(attempts=1, default_timeout=1.0)  # Ledgers needs one; never called here
    try:
        await ensure_indexes(collections)
        directory = MongoPracticeDirectory(collections)
        await directory.register_patient(PRACTICE, PATIENT, datetime.now(UTC))
        ledgers = Ledgers(BuiltinLedger(collections, directory), http)
        integration = Integration(PRACTICE, "builtin", True, {"currency": currency} if currency else {})
        yield BuiltinLedgerUnderTest(ledgers.for_integration(integration), collections)
    finally:
        await http.close()
        await client.drop_database(collections.db.name)
        await client.close()


class ScriptedRandom(random.Random):
    """Stands in for the reference ledger's random numbers, so a test says which request a fault hits.

    Each request that can be faulted draws one number (a fault of rate r hits when it is below r);
    once the script is spent, no fault hits.
    """

    def __init__(self, draws: Iterable[float]) -> None:
        super().__init__()
        self._draws = iter(draws)

    def random(self) -> float:
        return next(self._draws, 1.0)


@dataclass
class ReferenceLedger:
    """The reference ledger served over HTTP: its URL, its state, and every request it received."""

    url: str
    state: LedgerState
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path)

    def lookup_path(self, request: LedgerEntryRequest) -> str:
        return f"/entries/{request.idempotency_key}"


def entry_key(practice_id: str, payment_id: str) -> str:
    """The Idempotency-Key paypost sends a system for a payment's entry (``LedgerEntryRequest``)."""
    return f"paypost:{practice_id}:{payment_id}"


@contextlib.asynccontextmanager
async def serve_reference_ledger(state: LedgerState | None = None) -> AsyncIterator[ReferenceLedger]:
    """The reference ledger on a free port of 127.0.0.1, on this event loop, until the block ends."""
    served = ReferenceLedger(url="", state=state or LedgerState(patients={PATIENT, CLOSED_PATIENT}))
    app = create_reference_ledger(served.state)

    async def recorded(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            served.requests.append((scope["method"], scope["path"]))
        await app(scope, receive, send)

    async with serve_asgi(recorded, log_level="critical") as url:
        served.url = url
        yield served


class HttpLedgerUnderTest(LedgerUnderTest):
    """The HTTP ledger, as paypost posts to it, against the reference ledger over real HTTP."""

    def __init__(self, ledger: Ledger, server: ReferenceLedger) -> None:
        super().__init__(ledger)
        self.server = server

    async def entries(self) -> list[HeldEntry]:
        return [HeldEntry(e["entry_id"], e["practice_id"], e["patient_id"], e["payment_id"], e["refund_id"],
                          Decimal(e["amount"]), e["currency"], e["kind"], e["reversal_id"])
                for e in self.server.state.entries.values()]

    def refusing(self, request: LedgerEntryRequest) -> tuple[LedgerEntryRequest, str]:
        self.server.state.faults = Faults(reject_patients=[CLOSED_PATIENT])
        return replace(request, ehr_patient_id=CLOSED_PATIENT), "account is closed for new entries"


def http_integration(base_url: str, **settings: object) -> Integration:
    return Integration(PRACTICE, "http", True, {"base_url": base_url, **settings})


@contextlib.asynccontextmanager
async def http_ledger(attempts: int = 3, timeout: float = 0.5,
                      state: LedgerState | None = None) -> AsyncIterator[HttpLedgerUnderTest]:
    """An HTTP ledger making ``attempts`` tries of ``timeout`` seconds each, with its reference server."""
    http = HttpLedgers(attempts=attempts, default_timeout=timeout, hosts=LOCAL_HOSTS)
    try:
        async with serve_reference_ledger(state) as server:
            yield HttpLedgerUnderTest(http.for_integration(http_integration(server.url)), server)
    finally:
        await http.close()
