"""What a ledger adapter for another system imports (README, "Ledger adapters for other systems").

A package adds a ledger kind by registering, under the entry point group ``ENTRY_POINT_GROUP``, a
``LedgerAdapter``: a callable taking a practice's ledger settings and returning a ``Ledger``. Its
``post`` makes one entry per ``LedgerEntryRequest.idempotency_key`` however often it is called, and
raises ``LoadFailure`` for what only a person can fix (``LoadErrorCode.PATIENT_NOT_FOUND``,
``LEDGER_REJECTED``), ``TransientFailure`` for what may pass by itself (it is retried), and
``LedgerUnreachable`` (a ``TransientFailure``) when the system does not answer after the adapter's
own attempts (the payment waits out the outage, contract section 7). The shared
suite that checks all this is ``paypost.testing.ledger_suite``; a practice saved with settings the
adapter refuses is answered 400 (``InvalidLedgerSettings``), as is a kind no adapter provides
(``UnknownLedgerKind``).
"""

from paypost.domain.errors import LedgerUnreachable, LoadFailure, TransientFailure
from paypost.domain.integrations import InvalidLedgerSettings, UnknownLedgerKind
from paypost.domain.load_errors import LoadErrorCode
from paypost.domain.ports.ledgers import Ledger, LedgerAdapter
from paypost.domain.posting import LedgerEntryRequest, LedgerReceipt
from paypost.infra.ledgers.adapters import ENTRY_POINT_GROUP

__all__ = [
    "ENTRY_POINT_GROUP",
    "InvalidLedgerSettings",
    "Ledger",
    "LedgerAdapter",
    "LedgerEntryRequest",
    "LedgerReceipt",
    "LedgerUnreachable",
    "LoadErrorCode",
    "LoadFailure",
    "TransientFailure",
    "UnknownLedgerKind",
]
