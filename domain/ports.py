"""What the handlers need from the outside world, as protocols taking and giving domain values.

Only ``infra/`` implements them, and only ``infra/`` knows the query language behind them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from paypost.domain.access import EVERY, ApiKey, Scope
from paypost.domain.alerts import Alert, AlertKind, AlertState, Delivery, OutboxItem
from paypost.domain.audit_chain import Verification
from paypost.domain.integrations import Practice
from paypost.domain.load_errors import LoadError, LoadErrorCode
from paypost.domain.model import LoadStatus
from paypost.domain.operations import Canary, CanaryPhase, CanaryPlan, OperationItem
from paypost.domain.outages import PracticeOutage
from paypost.domain.posting import (
    Attempt,
    AuditEntry,
    Integration,
    KeptMessage,
    LedgerEntryRequest,
    LedgerReceipt,
    Posting,
    PostingKey,
)
from paypost.domain.reconciliation import Reconciliation
from paypost.domain.rules import ItemResult, PostingState
from paypost.domain.transfers import SettledTransfer
from paypost.domain.triage import FailureGroup

# Plain data a port only carries, never inspected by a handler: a ledger integration's settings (each
# kind's own shape, checked by its adapter), an event's JSON body, and the read side's rows that the
# API renders as JSON as they are (report rows, a posting's detail, an operation, ledger entries, the
# keys' trail). What a handler decides on is a typed value (Practice, Canary, Alert, Posting, ...).
Record = dict[str, Any]


class PostingStore(Protocol):
    """Where postings and their outcomes are kept (the intake's side)."""

    async def insert_received(self, posting: Posting, message: KeptMessage, audit: AuditEntry) -> bool:
        """Insert a new PENDING posting; False if one with its key exists."""

    async def get(self, key: PostingKey) -> Posting | None: ...

    async def claim_for_replay(self, posting: Posting, message: KeptMessage, audit: AuditEntry) -> bool:
        """FAILED → RETRYING with a republished body; False if the posting was not FAILED."""

    async def record_loaded(self, key: PostingKey, attempt: Attempt, ehr_patient_id: str, entry_id: str,
                            patient_account_id: str | None, settled: tuple[Decimal, str] | None = None) -> bool:
        """In flight → LOADED; False if the posting was no longer in flight. ``settled``: the amount
        and currency learnt as it loaded (a void's, a won dispute's), set on its row."""

    async def record_failed(self, key: PostingKey, attempt: Attempt, error: LoadError, ehr_patient_id: str | None,
                            patient_account_id: str | None, refunded_payment_id: str | None = None) -> bool:
        """In flight → FAILED, in its failure group (``paypost.domain.triage``); False if no longer in flight."""

    async def insert_finished(self, posting: Posting, message: KeptMessage, received: AuditEntry,
                              attempt: Attempt, entry_id: str | None) -> bool:
        """Insert a new posting with its outcome (``posting.load_status``, LOADED or FAILED) at once, for
        a ledger in paypost's own database (``Integration.posts_with_its_row``); False if one with its
        key exists."""

    async def insert_unreadable(self, posting: Posting, message: KeptMessage,
                                audit: AuditEntry) -> tuple[PostingKey, bool]:
        """Keep an unreadable message as a FAILED row of its own: its key, and whether it is new."""

    async def mark_dead_lettered(self, key: PostingKey, death: str, audit: AuditEntry) -> bool:
        """Note in the posting's trail that its message was dead-lettered, once per ``death`` (the
        message and the dead-lettering, as one marker); False if noted before."""

    async def owe_announcement(self, key: PostingKey, owed: str) -> None:
        """Note on the posting that its outcome's event (``paypost.domain.events.owed_as``) is still owed."""

    async def announced(self, key: PostingKey) -> None:
        """The owed event is sent: the note goes."""

    async def park(self, key: PostingKey, held: bool, audit: AuditEntry) -> Posting | None:
        """Park an in-flight posting to wait for its practice's system (``paypost.domain.outages``): it stays
        in flight, HELD if ``held``. The posting if this call made it HELD, else None."""

    async def parked(self, practice_id: str, limit: int) -> list[tuple[Posting, KeptMessage]]:
        """The practice's parked postings, in the order received (oldest first)."""

    async def parked_practices(self) -> list[str]:
        """Every practice with a parked posting."""

    async def parked_count(self, practice_id: str) -> int:
        """How many of the practice's postings are parked."""


@dataclass(frozen=True, slots=True)
class FailedSelection:
    """FAILED postings of a practice, narrowed by Load Error, patient account or merchant transfer."""

    practice_id: str
    error_codes: frozenset[LoadErrorCode] | None = None
    patient_account_id: str | None = None
    merchant_transfer_id: str | None = None
    group_id: str | None = None  # a failure group (``paypost.domain.triage``)


class PostingCommands(Protocol):
    """Operator and self-healing changes to postings; each item is one conditional write."""

    async def claim_for_retry(self, keys: Sequence[PostingKey], token: str,
                              audit: AuditEntry) -> list[tuple[Posting, KeptMessage]]:
        """FAILED → RETRYING for every key still retryable (``paypost.domain.rules.may_retry``), marked with
        ``token``; returns exactly what this call claimed, whatever raced it."""

    async def failed_keys(self, selection: FailedSelection, limit: int | None = None) -> list[PostingKey]: ...

    async def failed_refunds_by_payment(self, practice_id: str,
                                        payment_ids: Sequence[str]) -> dict[str, list[PostingKey]]:
        """Refunds waiting for one of these payments (``paypost.domain.rules.WAITS_FOR_PAYMENT``), by payment."""

    async def refunds_waiting_on_loaded(self, limit: int = 1000) -> dict[str, list[PostingKey]]:
        """Refunds still waiting for a payment that has loaded since, by practice."""

    async def stale_retrying(self, older_than_seconds: float, limit: int = 1000) -> list[tuple[Posting, KeptMessage]]:
        """RETRYING postings untouched for a while (a replay lost), each touched so the next sweep leaves it."""

    async def states(self, keys: Sequence[PostingKey]) -> dict[PostingKey, PostingState]: ...

    async def clear(self, key: PostingKey, command_id: str, audit: AuditEntry,
                    manual_reference: str | None) -> Posting | None:
        """FAILED → CLEARED; the cleared posting, or None if it was not FAILED."""

    async def record_clear_verified(self, key: PostingKey, verified: bool | None) -> None:
        """What the practice's system said of a clear's manual reference (None: it could not say)."""


class OutageStore(Protocol):
    """The practices whose system is failing or held (``paypost.domain.outages``): one record each."""

    async def every(self) -> list[PracticeOutage]: ...

    async def get(self, practice_id: str) -> PracticeOutage | None: ...

    async def failing(self, practice_id: str, error: str, at: datetime, probe_every: float) -> PracticeOutage:
        """A payment got no answer: the practice is failing from ``at`` unless it already was (or
        held); one more try without an answer is counted and the next try scheduled."""

    async def hold(self, practice_id: str, at: datetime, reason: str, held_by: str | None,
                   task_id: str | None, probe_at: datetime | None) -> PracticeOutage | None:
        """Hold the practice (paypost's hold: only one that is failing and not held by hand); the
        hold if this call made it, else None."""

    async def clear(self, practice_id: str, by_hand: bool) -> PracticeOutage | None:
        """The practice is healthy again: its record goes. Only a release by hand ends a hold by hand.
        The record removed, or None."""


class PracticeDirectory(Protocol):
    """Practices, their ledger integrations, and the patients registered in the built-in ledger."""

    async def integration(self, practice_id: str) -> Integration | None: ...

    async def put_practice(self, practice_id: str, name: str, ledger: Record, enabled: bool,
                           at: datetime) -> Practice:
        """Set up or change a practice; ``ledger`` is its integration as stored (a secret sealed)."""

    async def get_practice(self, practice_id: str) -> Practice | None: ...

    async def register_patient(self, practice_id: str, ehr_patient_id: str, at: datetime) -> bool: ...

    async def patient_registered(self, practice_id: str, ehr_patient_id: str) -> bool: ...

    async def list_practices(self, scope: Scope) -> list[Practice]:
        """The practices set up within ``scope``, by id."""


class MappingStore(Protocol):
    """(practice_id, patient_account_id) → the practice-management patient id."""

    async def get(self, practice_id: str, patient_account_id: str) -> str | None: ...

    async def put(self, practice_id: str, patient_account_id: str, ehr_patient_id: str, source: str,
                  at: datetime) -> str | None:
        """Enter or correct a mapping; the id it held before (None if new)."""


class Ledger(Protocol):
    """A practice-management ledger. Posting the same request twice makes one entry."""

    async def post(self, request: LedgerEntryRequest) -> LedgerReceipt:
        """Post an entry; raises LoadFailure for what only a person can fix."""


class LedgerFactory(Protocol):
    def for_integration(self, integration: Integration) -> Ledger: ...


class LedgerAdapter(Protocol):
    """What a package registers under the entry point group ``paypost.ledgers``: a practice's ledger
    from the settings of its integration (every field but ``kind``, its ``auth`` secret opened).

    Raise ``ValueError`` (a pydantic ``ValidationError`` is one) for settings it refuses: paypost
    calls it when a practice is saved, to check them, and answers 400 with the error's words (a
    pydantic error's locations and messages only, never its input). So build cheaply and open
    connections on the first ``post``. A ledger with an ``async aclose()`` is closed when paypost stops.
    """

    def __call__(self, settings: dict[str, object]) -> Ledger: ...


class LedgerKinds(Protocol):
    """The ledger kinds this paypost has beyond the contract's ``builtin`` and ``http``: adapters."""

    async def check(self, kind: str, settings: Record) -> None:
        """Raise ``UnknownLedgerKind`` unless an adapter provides ``kind``, and
        ``InvalidLedgerSettings`` if it refuses ``settings`` (``paypost.domain.integrations``)."""


class ClearEvidence(Protocol):
    """The practice's system, asked about an entry posted by hand (contract section 7)."""

    async def verify(self, practice_id: str, manual_reference: str, amount: Decimal | None) -> bool | None:
        """True if the system holds an entry by that reference for that amount, False if it holds
        none (or one of another amount), None if it cannot say (no such system, or no answer)."""


class SecretBox(Protocol):
    """Seals a practice's secret for storage and opens it again (``infra/ledgers/secrets.py``)."""

    def seal(self, secret: str) -> str: ...

    def open(self, sealed: str) -> str: ...


class UrlPolicy(Protocol):
    """Where a practice's system may be reached (contract section 7)."""

    async def check(self, url: str) -> None:
        """Raise ``paypost.domain.errors.RefusedHost`` naming the rule unless paypost may call ``url``."""


class LedgerEntries(Protocol):
    """The built-in ledger's entries of one patient, for the office to read."""

    async def entries(self, practice_id: str, ehr_patient_id: str) -> list[Record]:
        """The entries as stored (a Record: only rendered by the API, never inspected)."""


class AlertStore(Protocol):
    """Office tasks and patient flags (``paypost.domain.alerts``); each change happens once however many ask."""

    async def open_task(self, posting: Posting, at: datetime) -> Alert | None:
        """Open the posting's task; None if it has one already."""

    async def open_flag(self, posting: Posting, at: datetime) -> Alert | None:
        """Open the posting's patient account's flag; None unless this call opened it."""

    async def resolve_task(self, key: PostingKey, at: datetime) -> Alert | None:
        """Resolve the posting's task; None unless this call resolved it."""

    async def resolve_flag_if_clear(self, practice_id: str, patient_account_id: str, at: datetime) -> Alert | None:
        """Resolve the account's flag once none of its postings is still failing; None otherwise."""

    async def open_outage_task(self, practice_id: str, task_id: str, detail: str, at: datetime) -> Alert | None:
        """Open the office task of a hold (``paypost.domain.outages.outage_task_id``); None if it is open already."""

    async def resolve_outage_task(self, practice_id: str, at: datetime) -> Alert | None:
        """Resolve the practice's open outage task; None if none was open."""

    async def due_for_escalation(self, before: datetime, limit: int = 500,
                                 now: datetime | None = None) -> list[Alert]:
        """Open alerts opened before ``before`` and not snoozed past ``now``."""

    async def escalate(self, alert_id: str, at: datetime) -> Alert | None:
        """Escalate an open alert unless it is snoozed past ``at``; None unless this call escalated it."""

    async def get(self, alert_id: str) -> Alert | None: ...

    async def snooze(self, alert_id: str, until: datetime, reason: str, by: str, at: datetime) -> Alert | None:
        """Keep an alert that is not resolved from escalating before ``until``; None if it is resolved."""

    async def list(self, practice_id: str | None, state: AlertState | None, limit: int = 500,
                   scope: Scope = EVERY) -> list[Alert]:
        """Newest first, within ``scope``; ``AlertState.OPEN`` includes escalated alerts."""


class AlertOutbox(Protocol):
    """The alerts whose latest change their practice's system has not got (written with the change)."""

    async def claim(self, now: datetime, limit: int, lease_seconds: float) -> list[OutboxItem]:
        """Alerts due to be sent, each claimed for ``lease_seconds`` so no other process sends it meanwhile."""

    async def delivered(self, item: OutboxItem, state: Delivery, put: bool, patient_id: str | None) -> None:
        """The system has ``item``'s version (or needs nothing): due again only if the alert changed since."""

    async def later(self, item: OutboxItem, at: datetime, state: Delivery, error: str | None) -> None:
        """Not delivered: due again at ``at``."""

    async def nudge(self, practice_id: str, patient_account_id: str) -> int:
        """The account's mapping was entered: its flags waiting for one are due now; how many."""


class AlertSystem(Protocol):
    """A practice's system, for the office tasks and patient flags paypost puts in it (contract 7)."""

    async def put_task(self, alert: Alert) -> None: ...

    async def delete_task(self, alert_id: str) -> None:
        """Gone already (404) is done too."""

    async def put_flag(self, patient_id: str, alert: Alert) -> None: ...

    async def delete_flag(self, patient_id: str, alert_id: str) -> None:
        """Gone already (404) is done too."""


class AlertSystems(Protocol):
    def alerts_for(self, integration: Integration) -> AlertSystem | None:
        """The practice's system for its alerts; None if it has none (built-in ledger, ``tasks: false``)."""


class TransferStore(Protocol):
    """Settled merchant transfers and the state of the postings they carry."""

    async def settled(self, transfer: SettledTransfer) -> None:
        """Keep a settled transfer; a later settlement of the same transfer replaces it."""

    async def get(self, practice_id: str, merchant_transfer_id: str) -> SettledTransfer | None: ...

    async def reconcile(self, transfer: SettledTransfer) -> Reconciliation: ...

    async def unreconciled_with_any(self, practice_id: str, posting_ids: Sequence[str]) -> list[SettledTransfer]: ...

    async def unreconciled(self, limit: int) -> list[SettledTransfer]: ...

    async def mark_reconciled(self, transfer: SettledTransfer, at: datetime) -> bool:
        """True for the one call that marked it (a transfer is announced reconciled once)."""


class OperationStore(Protocol):
    """Save Changes operations: the selection, and each item's result as commands are applied."""

    async def create(self, operation_id: str, practice_id: str, actor: str, items: Sequence[OperationItem],
                     at: datetime, canary: CanaryPlan | None = None) -> None:
        """Record an operation; with ``canary`` (its first retries, the rest, a deadline) it waits for a verdict."""

    async def canaries_to_advance(self, now: datetime, stale_after: float, limit: int = 100) -> list[Canary]:
        """Canaries waiting for a verdict, or whose verdict's claim is older than ``stale_after``."""

    async def claim_canary(self, operation_id: str, phase: CanaryPhase, to: CanaryPhase, message: str | None,
                           at: datetime, claimed_before: datetime | None = None) -> bool:
        """Move a canary from ``phase`` to ``to``; True for the one call that moved it."""

    async def finish_canary(self, operation_id: str, phase: CanaryPhase, to: CanaryPhase) -> None:
        """The verdict is carried out: the canary leaves the ones to advance."""

    async def recorded(self, operation_id: str, action: str, payment_ids: Sequence[str]) -> set[str]:
        """Which of these items of the operation have their result kept."""

    async def discard(self, operation_id: str) -> None: ...

    async def record(self, operation_id: str, results: Sequence[ItemResult], at: datetime) -> None:
        """Keep each item's result; writing the same result again changes nothing."""

    async def get(self, operation_id: str) -> Record | None:
        """The operation with each item's result, as the API shows it (read to be rendered, never inspected)."""


@dataclass(frozen=True, slots=True)
class PostingFilter:
    """The Merchant Transfers report's filters (each optional)."""

    practice_id: str | None = None
    status: LoadStatus | None = None
    error_code: LoadErrorCode | None = None
    merchant_transfer_id: str | None = None
    patient_account_id: str | None = None
    received_from: datetime | None = None
    received_to: datetime | None = None
    scope: Scope = EVERY  # the practices the caller sees (section 6): every one by default


@dataclass(frozen=True, slots=True)
class StatusTotal:
    """How many postings a Load Status holds, and their amounts as the report's rows show them."""

    status: LoadStatus
    count: int
    amount: Decimal


class PostingReader(Protocol):
    """The report's rows, newest first, paged by an opaque cursor.

    Rows are Records: the API renders them (``api/render.py``) and no handler reads a field of one."""

    async def page(self, where: PostingFilter, limit: int, cursor: str | None) -> tuple[list[Record], str | None]:
        """Raises ``paypost.domain.errors.BadCursor`` for a cursor paypost did not hand out."""

    async def one(self, key: PostingKey) -> Record | None:
        """One posting with its attempts and audit trail."""

    async def rows(self, practice_id: str, payment_ids: Sequence[str]) -> list[Record]: ...

    def every_row(self, where: PostingFilter) -> AsyncIterator[Record]:
        """Every row the filter selects, newest first, read from the database a batch at a time."""
        ...

    async def summary(self, where: PostingFilter) -> list[StatusTotal]:
        """Count and amount per Load Status of the postings the filter selects (statuses with none left out)."""


class FailureGroupReader(Protocol):
    """The failure groups of FAILED postings (``paypost.domain.triage``), kept current by the writes on postings."""

    async def groups(self, practice_id: str | None, scope: Scope) -> list[FailureGroup]:
        """Largest count first; one practice's, or every practice's within ``scope``."""


class PostingNotes(Protocol):
    """Notes and the assignee of a posting; each is an entry of its audit trail."""

    async def add_note(self, key: PostingKey, entry: AuditEntry) -> int | None:
        """Append a note (action ``note``); the posting's notes count after it, None if no such posting."""

    async def assign(self, key: PostingKey, assignee: str | None, entry: AuditEntry) -> bool:
        """Set or clear who is looking at the posting; False if no such posting."""


class BroadcastEvent(Protocol):
    """One event of ``paypost.events`` as a live feed hands it on."""

    @property
    def routing_key(self) -> str: ...

    @property
    def body(self) -> Record: ...


class EventFeed(Protocol):
    """The live feed of ``paypost.events`` (the console's)."""

    def subscribe(self) -> AsyncIterator[BroadcastEvent]:
        """Events from now on, until the feed closes."""
        ...


class Readiness(Protocol):
    """Whether the broker and the database answer."""

    async def problems(self) -> dict[str, str | None]:
        """Each service by name, with None if it answers, else why not (an error's name)."""
        ...


class AuditTrail(Protocol):
    """The audit trail's hash chain (``paypost.domain.audit_chain``): sealed as entries are written, checked whole."""

    async def seal(self, limit: int = 500) -> int:
        """Seal the entries written since the last seal (up to ``limit`` postings); how many were sealed."""

    async def verify(self) -> Verification:
        """Recompute every sealed entry and every seal from the one before."""


class SealedSecrets(Protocol):
    """The practices' secrets as stored, sealed (``SecretBox``)."""

    async def reseal_all(self) -> int:
        """Seal each again with the first key (a key rotation); how many. Raises
        ``paypost.domain.integrations.SecretKeyError`` for one that no configured key opens."""


class ApiKeyStore(Protocol):
    """Keys made through the API, each kept with its token's hash only, and who made or revoked them."""

    async def add(self, key: ApiKey, token_hash: str) -> None: ...

    async def by_hash(self, token_hash: str) -> tuple[ApiKey, str] | None:
        """The key whose token has this hash, with the hash as stored (revoked and expired ones too)."""

    async def get(self, key_id: str) -> ApiKey | None: ...

    async def every(self) -> list[ApiKey]:
        """Every key, newest first (revoked ones too)."""

    async def revoke(self, key_id: str, at: datetime) -> ApiKey | None:
        """Revoke a key; None unless this call revoked it."""

    async def record(self, at: datetime, actor: str, action: str, key: ApiKey) -> None:
        """Keep who created or revoked which key, in the keys' own trail."""

    async def trail(self, limit: int = 500) -> list[Record]:
        """The keys' trail, newest first (Records: only rendered by the API)."""


class FailedKeyCounts(Protocol):
    """Calls with an unknown, revoked or expired key, per client address, counted where every API
    process sees the same count (so several processes allow 20 between them, not 20 each)."""

    async def add(self, address: str, at: datetime, window: timedelta) -> tuple[int, datetime]:
        """Count one such call from ``address`` at ``at``, in the address's window if one began less
        than ``window`` before ``at``, else in a new one beginning at ``at``; that window's count so
        far (this call included) and when it began."""
        ...


@dataclass(frozen=True, slots=True)
class MappingFailure:
    """A FAILED posting whose failure a mapping heals (``paypost.domain.rules.MAPPING_FIXES``)."""

    key: PostingKey
    patient_account_id: str
    tried_ehr_patient_id: str | None  # the patient its load was tried with (None: no mapping then)


class MappingFailures(Protocol):
    async def mapping_failures(self, limit: int, after: PostingKey | None = None) -> list[MappingFailure]:
        """Retryable FAILED postings of every practice that failed for want of a (correct) mapping:
        a page of at most ``limit`` in the order of their keys, from the first after ``after``."""


# Money that moves back (contract section 10)


class PaymentBalances(Protocol):
    """What refunds and reversals took back from each payment, counted with one conditional write
    on the payment, so that two of them at once never both pass when together they take back more
    than the payment (``paypost.domain.reversals.may_take``)."""

    async def take(self, payment: PostingKey, posting_id: str, amount: Decimal | None) -> Decimal | None:
        """Count ``amount`` (None: all that is left, a void) of refund or reversal ``posting_id``
        against its LOADED payment: the amount counted (as counted before, if it was), or None if it
        would take back more than is left. A negative amount (a won dispute) gives back."""

    async def give_back(self, payment: PostingKey, posting_id: str) -> None:
        """Undo ``posting_id``'s count (its load failed); nothing if it is not counted."""

    async def taken(self, payment: PostingKey) -> tuple[Decimal, list[tuple[str, Decimal]]] | None:
        """The payment's amount and what is counted against it, by posting; None without the payment."""


class ReversalAlertStore(Protocol):
    """The office tasks and patient flags of loaded reversals: opened once each, resolved by hand or
    by a won dispute, never by a later load (contract section 10)."""

    async def open(self, kind: AlertKind, posting: Posting, title: str, detail: str, at: datetime) -> Alert | None:
        """Open the reversal's task or flag; None if it was opened before."""

    async def resolve_of(self, practice_id: str, reversal_id: str, at: datetime, reason: str) -> list[Alert]:
        """Resolve the reversal's open alerts (its dispute was won); those this call resolved."""

    async def resolve_by_hand(self, alert_id: str, reason: str, by: str, at: datetime) -> Alert | None:
        """An operator resolves an open alert, recorded in its posting's audit trail; None if it was not open."""
