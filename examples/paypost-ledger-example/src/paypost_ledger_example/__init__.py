"""An example ledger adapter for paypost: a practice's ledger in an SQLite file.

paypost finds it through the entry point ``example-sqlite`` of the group ``paypost.ledgers`` and
calls ``open_ledger`` with the settings of a practice whose ledger is
``{kind: "example-sqlite", path}``. Each entry is kept under paypost's idempotency key (the table's
primary key), so posting a payment again, from any number of workers at once, finds the entry made
the first time.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from pydantic import BaseModel, ConfigDict, field_validator

from paypost.adapters import LedgerEntryRequest, LedgerReceipt, LoadErrorCode, LoadFailure, TransientFailure

_SCHEMA = """
CREATE TABLE IF NOT EXISTS patients (
    practice_id TEXT NOT NULL, patient_id TEXT NOT NULL, closed INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (practice_id, patient_id));
CREATE TABLE IF NOT EXISTS entries (
    idempotency_key TEXT PRIMARY KEY, entry_id TEXT NOT NULL UNIQUE, practice_id TEXT NOT NULL,
    patient_id TEXT NOT NULL, payment_id TEXT NOT NULL, refund_id TEXT, amount TEXT NOT NULL,
    currency TEXT NOT NULL, occurred_at TEXT NOT NULL, posted_at TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT 'payment', reversal_id TEXT);
"""
# A file made before paypost 1.2 has no kind and no reversal_id: they are added to it.
_ADDED_COLUMNS = {"kind": "TEXT NOT NULL DEFAULT 'payment'", "reversal_id": "TEXT"}


class Settings(BaseModel):
    """A practice's ledger settings: where its file is."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        # The message is shown to whoever saved the practice: it says what is wrong, never the value.
        if not Path(value).is_absolute():
            raise ValueError("the ledger file's path must be absolute")
        if not Path(value).parent.is_dir():
            raise ValueError("the ledger file's folder does not exist")
        return value


@dataclass(frozen=True)
class Entry:
    """An entry as the file holds it."""

    entry_id: str
    practice_id: str
    patient_id: str
    payment_id: str
    refund_id: str | None
    amount: Decimal
    currency: str
    kind: str = "payment"  # payment, refund, void, return, chargeback or dispute_won
    reversal_id: str | None = None  # a void's, return's, chargeback's or won dispute's own id


class LedgerFile:
    """The ledger file itself, as the practice's office works on it (patients in, entries out)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: another writer waits for it (``BEGIN IMMEDIATE``), up to 10 s."""
        with closing(sqlite3.connect(self.path, timeout=10, isolation_level=None)) as db:
            db.executescript(_SCHEMA)
            columns = {row[1] for row in db.execute("PRAGMA table_info(entries)")}
            for name, declared in _ADDED_COLUMNS.items():
                if name not in columns:
                    db.execute(f"ALTER TABLE entries ADD COLUMN {name} {declared}")
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def add_patient(self, practice_id: str, patient_id: str, *, closed: bool = False) -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO patients VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET closed = excluded.closed",
                       (practice_id, patient_id, int(closed)))

    def entries(self) -> list[Entry]:
        with self.transaction() as db:
            rows = db.execute("SELECT entry_id, practice_id, patient_id, payment_id, refund_id, amount, currency, "
                              "kind, reversal_id FROM entries ORDER BY posted_at, entry_id").fetchall()
        return [Entry(r[0], r[1], r[2], r[3], r[4], Decimal(r[5]), r[6], r[7], r[8]) for r in rows]


class SqliteLedger:
    """The Ledger port over a ``LedgerFile``; SQLite's blocking calls run off the event loop."""

    def __init__(self, file: LedgerFile) -> None:
        self.file = file

    async def post(self, request: LedgerEntryRequest) -> LedgerReceipt:
        try:
            return await asyncio.to_thread(self._post, request)
        except sqlite3.OperationalError as exc:  # locked past the timeout, a full disk: it may pass
            raise TransientFailure(f"the ledger file could not be written ({exc})") from exc

    def _post(self, request: LedgerEntryRequest) -> LedgerReceipt:
        # The entry is looked up first, in the transaction that would make it, whatever
        # ``request.maybe_posted`` says: a call whose answer was lost is found here, never doubled.
        with self.file.transaction() as db:
            found = db.execute("SELECT entry_id FROM entries WHERE idempotency_key = ?",
                               (request.idempotency_key,)).fetchone()
            if found is not None:
                return LedgerReceipt(entry_id=found[0], already_posted=True)
            patient = db.execute("SELECT closed FROM patients WHERE practice_id = ? AND patient_id = ?",
                                 (request.practice_id, request.ehr_patient_id)).fetchone()
            if patient is None:
                raise LoadFailure(LoadErrorCode.PATIENT_NOT_FOUND,
                                  f"The ledger file holds no patient {request.ehr_patient_id}.")
            if patient[0]:
                raise LoadFailure(LoadErrorCode.LEDGER_REJECTED,
                                  f"Patient {request.ehr_patient_id}'s account is closed for new entries.")
            entry_id = str(uuid.uuid4())
            db.execute("INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", (
                request.idempotency_key, entry_id, request.practice_id, request.ehr_patient_id, request.payment_id,
                request.refund_id, str(request.amount), request.currency, request.occurred_at.isoformat(),
                datetime.now(UTC).isoformat(), request.kind, request.reversal_id))
        return LedgerReceipt(entry_id=entry_id)


def open_ledger(settings: dict[str, object]) -> SqliteLedger:
    """The adapter paypost calls (entry point ``example-sqlite``): it opens nothing yet, so paypost
    can call it to check a practice's settings when they are saved."""
    return SqliteLedger(LedgerFile(Settings.model_validate(settings).path))
