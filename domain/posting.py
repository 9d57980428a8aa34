"""The records the posting life cycle works with."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from paypost.domain.load_errors import LoadError
from paypost.domain.model import LoadStatus, PostingKind

UNKNOWN_PRACTICE = "_unknown"
PAYPOST_ACTOR = "paypost"


@dataclass(frozen=True, slots=True)
class PostingKey:
    """(practice_id, payment_id) identifies a payment, refund or unreadable message for ever."""

    practice_id: str
    payment_id: str

    def __str__(self) -> str:
        return f"{self.practice_id}/{self.payment_id}"


@dataclass(frozen=True, slots=True)
class KeptMessage:
    """A message exactly as it arrived, kept with its posting so a retry can replay it."""

    body: bytes
    routing_key: str
    message_id: str | None
    headers: dict[str, object] = field(default_factory=dict)
    # When paypost took the delivery from the broker (None: when it is handled). A posting's
    # "order received" is this order, however its deliveries were batched after.
    arrived_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try at loading a posting into the ledger."""

    at: datetime
    duration_ms: float
    outcome: str  # "loaded" or "failed"
    load_error: LoadError | None = None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """Who did what to a posting, when and why. The trail is append-only."""

    at: datetime
    actor: str
    action: str
    reason: str | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class Posting:
    """A row of the Merchant Transfers report, as the posting consumer needs it."""

    key: PostingKey
    kind: PostingKind
    load_status: LoadStatus
    event_id: str | None
    received_at: datetime
    patient_account_id: str | None = None
    event_ehr_patient_id: str | None = None  # the id the event carried
    ehr_patient_id: str | None = None  # the id the posting went (or goes) to
    amount: Decimal | None = None
    currency: str | None = None
    method: str | None = None
    merchant_transfer_id: str | None = None
    # What a refund or reversal follows: the payment it takes back from (a won dispute: its dispute).
    refunded_payment_id: str | None = None
    return_code: str | None = None  # a return's bank code (contract section 10)
    fee_amount: Decimal | None = None  # a return's fee to charge the patient, if the practice charges one
    load_error: LoadError | None = None
    replays: int = 0
    # The outcome is durable but its events could not all be sent: which event it still owes
    # (paypost.domain.events.owed_as), for whichever process meets the posting next.
    announcement_owed: str | None = None
    # When its entry was first sent to a practice's system that paypost calls out to (None: never).
    # From then on an answer may have been lost after the system committed the entry, so every
    # later call looks the entry up before posting it (``LedgerEntryRequest.maybe_posted``).
    sent_at: datetime | None = None
    # When it happened at the payments platform: the month it belongs to (contract section 11).
    occurred_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Integration:
    """A practice's ledger integration."""

    practice_id: str
    kind: str  # "builtin", "http", or the name an installed ledger adapter is registered under
    enabled: bool
    settings: dict[str, object] = field(default_factory=dict)

    @property
    def posts_with_its_row(self) -> bool:
        """The built-in ledger keeps its entries in paypost's own database, found again by their key:
        nothing a new posting does leaves that database before its outcome, so the posting is written
        once, with its outcome, instead of a PENDING row and then its outcome. A delivery handled
        again finds the entry (or the row). Every other ledger is a call out, which may take seconds
        or not answer: its posting is PENDING in the report meanwhile."""
        return self.kind == "builtin"


@dataclass(frozen=True, slots=True)
class LedgerEntryRequest:
    """What is posted to a ledger. ``posting_id`` is the payment's, refund's or reversal's id: one
    entry each. ``payment_id`` is the payment it is against; ``kind`` says what the entry is
    (``payment``, ``refund``, ``void``, ``return``, ``chargeback``, ``dispute_won``), and a
    reversal's own id is ``reversal_id`` (a refund's is ``refund_id``)."""

    practice_id: str
    ehr_patient_id: str
    posting_id: str
    payment_id: str
    refund_id: str | None
    amount: Decimal  # negative for a refund or reversal, positive for a payment or a won dispute
    currency: str
    occurred_at: datetime
    # An earlier call for this entry (in any process, before a crash, a park, a hold or a retry)
    # may have reached the system with its answer lost: the ledger finds the entry by its
    # idempotency key before it posts anything. False: no call for it was ever sent.
    maybe_posted: bool = False
    kind: str = "payment"
    reversal_id: str | None = None

    @property
    def idempotency_key(self) -> str:
        return f"paypost:{self.practice_id}:{self.posting_id}"


@dataclass(frozen=True, slots=True)
class LedgerReceipt:
    """The ledger's word that an entry exists (made now or found from before), or, from the built-in
    ledger, that it is made with the posting's outcome: ``entry`` is then what the outcome's write
    stores in the posting's row (one write for both, so neither is ever there without the other)."""

    entry_id: str
    already_posted: bool = False
    entry: dict[str, object] | None = field(default=None, compare=False, hash=False)


@dataclass(frozen=True, slots=True)
class FirstOutcome:
    """A new posting's first write, with its outcome (``posting``, LOADED or FAILED), into a ledger
    kept in paypost's database: its message, its "received" entry, the attempt that decided it, and
    the ledger's receipt if it loaded (the built-in ledger's entry is kept in the row)."""

    posting: Posting
    message: KeptMessage
    received: AuditEntry
    attempt: Attempt
    receipt: LedgerReceipt | None = None
