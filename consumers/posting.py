"""The posting service: load one payment or refund into its practice's ledger, exactly once."""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Protocol

import structlog

from consumers import metrics
from consumers.reading import Unreadable, read_message
from domain.errors import LoadFailure
from domain.load_errors import MAPPING_FIXES, LoadErrorCode, load_error
from domain.model import Delivery, LoadStatus, PostingKind, choose_patient, decide_delivery
from domain.ports import LedgerFactory, MappingStore, PostingStore, PracticeDirectory
from domain.posting import (
    PAYPOST_ACTOR,
    Attempt,
    AuditEntry,
    KeptMessage,
    LedgerEntryRequest,
    Posting,
    PostingKey,
)
from producers.events import OutcomePublisher
from schemas.messages import PaymentPosted, PaymentRefunded, WireModel
from schemas.topics import PAYMENT_POSTED, PAYMENT_REFUNDED, REPLAYS_HEADER

INTAKE_MESSAGES = {PAYMENT_POSTED: PaymentPosted, PAYMENT_REFUNDED: PaymentRefunded}

log = structlog.get_logger("paypost.posting")

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class Reactions(Protocol):
    """What follows a durable outcome (alerts, self-healing, reconciliation)."""

    async def failed(self, posting: Posting) -> None: ...

    async def finished(self, posting: Posting, had_failed: bool = True) -> None: ...


class Disposition(enum.Enum):
    """What the subscriber does with the delivery once the outcome is durable."""

    ACK = "ack"
    DEAD_LETTER = "dead_letter"


@dataclass(frozen=True, slots=True)
class Outcome:
    disposition: Disposition
    key: PostingKey
    load_status: LoadStatus | None = None
    error_code: LoadErrorCode | None = None


@dataclass(frozen=True, slots=True)
class Unannounced:
    """A durable outcome whose events and reactions did not all go out (the broker went away)."""

    outcome: Outcome
    announce: Callable[[], Awaitable[None]]


# Outcomes kept for their announcement at most: a delivery that never comes back to this process
# (another took it) must not hold memory for ever. Without an outage there are none.
MAX_UNANNOUNCED = 10_000


@dataclass(frozen=True, slots=True)
class HeldMapping:
    """A patient account's mapping as read: the practice-management id, or None (not mapped)."""

    ehr_patient_id: str | None


def posting_from(message: PaymentPosted | PaymentRefunded, received_at: datetime) -> Posting:
    """The new PENDING posting a payment or refund message stands for."""
    if isinstance(message, PaymentPosted):
        return Posting(
            key=PostingKey(message.practice_id, message.payment_id),
            kind=PostingKind.PAYMENT,
            load_status=LoadStatus.PENDING,
            event_id=message.event_id,
            received_at=received_at,
            patient_account_id=message.patient_account_id,
            event_ehr_patient_id=message.ehr_patient_id,
            amount=message.amount,
            currency=message.currency,
            method=message.method.value,
            merchant_transfer_id=message.merchant_transfer_id,
        )
    return Posting(
        key=PostingKey(message.practice_id, message.refund_id),
        kind=PostingKind.REFUND,
        load_status=LoadStatus.PENDING,
        event_id=message.event_id,
        received_at=received_at,
        amount=message.amount,
        currency=message.currency,
        refunded_payment_id=message.payment_id,
    )


def unreadable_posting(unreadable: Unreadable, received_at: datetime) -> Posting:
    return Posting(
        key=PostingKey(unreadable.practice_id, unreadable.row_id),
        kind=PostingKind.UNREADABLE,
        load_status=LoadStatus.FAILED,
        event_id=None,
        received_at=received_at,
        load_error=load_error(unreadable.code, unreadable.detail),
    )


class PostingService:
    """Loads payments and refunds; every outcome is written before the message is settled."""

    def __init__(
        self,
        postings: PostingStore,
        practices: PracticeDirectory,
        mappings: MappingStore,
        ledgers: LedgerFactory,
        outcomes: OutcomePublisher,
        max_message_bytes: int,
        clock: Clock = utc_now,
    ) -> None:
        self._postings = postings
        self._practices = practices
        self._mappings = mappings
        self._ledgers = ledgers
        self._outcomes = outcomes
        self._max_bytes = max_message_bytes
        self._clock = clock
        # Told of every durable outcome: alerts, self-healing, reconciliation.
        self.reactions: Reactions | None = None
        # Told when a patient account's mapping changed while one of its payments was failing
        # for want of it (practice_id, patient_account_id): the self-healing runs again.
        self.remapped: Callable[[str, str], Awaitable[object]] | None = None
        # Durable outcomes whose announcement failed, by posting: announced when the delivery
        # comes back (the batch handled again, or redelivered) instead of being taken for a duplicate.
        self._unannounced: dict[PostingKey, Unannounced] = {}

    @property
    def outcomes(self) -> OutcomePublisher:
        return self._outcomes

    def read(self, message: KeptMessage) -> PaymentPosted | PaymentRefunded | Unreadable:
        """Read a delivery of the intake queue: a payment, a refund, or an unreadable message."""
        return read_message(message, self._max_bytes, INTAKE_MESSAGES)  # type: ignore[return-value]

    def read_any(self, message: KeptMessage) -> WireModel | Unreadable:
        """Read any inbound message by its routing key (the dead-letter queue gets them all)."""
        return read_message(message, self._max_bytes)

    async def handle_batch(self, messages: list[KeptMessage]) -> list[Outcome]:
        """Receive a batch of deliveries together; their database calls go in shared round trips.

        Every message is handled to its end even when another fails; then the first error is
        raised, and the whole batch may be handled again (each message is safe to handle twice).
        """
        results = await asyncio.gather(*(self.handle(m) for m in messages), return_exceptions=True)
        outcomes = []
        for result in results:
            if isinstance(result, BaseException):
                raise result
            outcomes.append(result)
        return outcomes

    async def handle(self, message: KeptMessage) -> Outcome:
        """Receive one delivery. Safe to call again for the same delivery: it never posts twice."""
        read = self.read(message)
        if isinstance(read, Unreadable):
            return await self.keep_unreadable(read, message)
        now = self._clock()
        fresh = posting_from(read, now)
        metrics.RECEIVED.labels(fresh.kind.value).inc()
        received = AuditEntry(
            at=now, actor=PAYPOST_ACTOR, action="received",
            detail=f"event {read.event_id} via {message.routing_key}",
        )
        # A replay's row exists (paypost kept its message): look it up rather than try to insert.
        replayed = REPLAYS_HEADER in message.headers
        # The patient's mapping is read while the PENDING row is written, or while a replay's row
        # is read (one round trip fewer in series); a mapping entered after this read is caught
        # by _heal_if_remapped.
        if not replayed:
            inserted, held = await asyncio.gather(
                self._postings.insert_received(fresh, message, received), self._mapping_for(fresh))
            if inserted:
                return await self._load(fresh, held)
            existing = await self._postings.get(fresh.key)
        else:
            existing, held = await asyncio.gather(self._postings.get(fresh.key), self._mapping_for(fresh))
        if existing is None:
            if replayed and await self._postings.insert_received(fresh, message, received):
                return await self._load(fresh, held)
            return Outcome(Disposition.ACK, fresh.key)  # deleted in between: nothing paypost does
        match decide_delivery(existing.load_status):
            case Delivery.ALREADY_DONE:
                if (announced := await self._announce_pending(fresh.key)) is not None:
                    return announced
                log.info("duplicate_ignored", posting=str(fresh.key), load_status=existing.load_status.value)
                return Outcome(Disposition.ACK, fresh.key, existing.load_status)
            case Delivery.REPLAY_NEW_BODY if existing.event_id == fresh.event_id:
                # The same event delivered again (not an upstream correction): nothing new to try.
                if (announced := await self._announce_pending(fresh.key)) is not None:
                    return announced
                return Outcome(Disposition.ACK, fresh.key, existing.load_status)
            case Delivery.REPLAY_NEW_BODY:
                correction = AuditEntry(
                    at=now, actor=PAYPOST_ACTOR, action="retry",
                    reason="republished by the payments platform while FAILED",
                    detail=f"event {read.event_id}",
                )
                if not await self._postings.claim_for_replay(fresh, message, correction):
                    return Outcome(Disposition.ACK, fresh.key)
                await self._outcomes.retried(replace(fresh, load_status=LoadStatus.RETRYING), correction)
                return await self._load(replace(fresh, load_status=LoadStatus.RETRYING, replays=existing.replays))
            case Delivery.LOAD:
                same_account = existing.patient_account_id == fresh.patient_account_id
                return await self._load(existing, held if same_account else None)

    async def keep_unreadable(self, unreadable: Unreadable, message: KeptMessage) -> Outcome:
        """Give an unreadable message a FAILED row of its own; it is then dead-lettered."""
        now = self._clock()
        posting = unreadable_posting(unreadable, now)
        audit = AuditEntry(at=now, actor=PAYPOST_ACTOR, action="failed", detail=unreadable.detail)
        key, created = await self._postings.insert_unreadable(posting, message, audit)
        posting = replace(posting, key=key)
        outcome = Outcome(Disposition.DEAD_LETTER, key, LoadStatus.FAILED, unreadable.code)
        if not created:  # seen before (a redelivery, or back from the dead-letter queue)
            return await self._announce_pending(key) or outcome
        log.warning(
            "message_unreadable", posting=str(key), error_code=unreadable.code.value,
            routing_key=message.routing_key[:100],
        )
        return await self._announced(outcome, lambda: self._tell_failed(posting))

    async def _tell_failed(self, posting: Posting) -> None:
        """The failure's event for dashboards, then its office task and patient flag."""
        await self._outcomes.failed(posting)
        if self.reactions is not None:
            await self.reactions.failed(posting)

    async def _announced(self, outcome: Outcome, announce: Callable[[], Awaitable[None]]) -> Outcome:
        """Send a durable outcome's events and reactions. If they fail (the broker went away), the
        outcome is kept until its delivery comes back, which announces it again (at least once)."""
        try:
            await announce()
        except BaseException:
            if len(self._unannounced) >= MAX_UNANNOUNCED:
                dropped = next(iter(self._unannounced))
                del self._unannounced[dropped]
                log.error("announcement_dropped", posting=str(dropped), kept=MAX_UNANNOUNCED)
            self._unannounced[outcome.key] = Unannounced(outcome, announce)
            raise
        return outcome

    async def _announce_pending(self, key: PostingKey) -> Outcome | None:
        """Announce the outcome of ``key`` if its announcement failed before; None if none is owed."""
        pending = self._unannounced.pop(key, None)
        if pending is None:
            return None
        log.info("outcome_announced_late", posting=str(key))
        return await self._announced(pending.outcome, pending.announce)

    async def _mapping_for(self, posting: Posting) -> HeldMapping | None:
        """The mapping a payment will be loaded with (None for a refund, which follows its payment)."""
        if posting.kind is not PostingKind.PAYMENT or posting.patient_account_id is None:
            return None
        return HeldMapping(await self._mappings.get(posting.key.practice_id, posting.patient_account_id))

    async def _load(self, posting: Posting, held: HeldMapping | None = None) -> Outcome:
        started = time.perf_counter()
        at = self._clock()
        ehr_patient_id: str | None = None
        account = posting.patient_account_id
        try:
            ehr_patient_id, account, request = await self._prepare(posting, held)
            integration = await self._practices.integration(posting.key.practice_id)
            if integration is None or not integration.enabled:
                raise LoadFailure(LoadErrorCode.INTEGRATION_NOT_CONFIGURED)
            receipt = await self._ledgers.for_integration(integration).post(request)
        except LoadFailure as failure:
            error = load_error(failure.code, failure.detail)
            attempt = Attempt(at, _ms(started), "failed", error)
            if not await self._postings.record_failed(posting.key, attempt, error, ehr_patient_id, account):
                return Outcome(Disposition.ACK, posting.key)
            log.info("posting_failed", posting=str(posting.key), error_code=failure.code.value)
            failed = replace(posting, load_status=LoadStatus.FAILED, load_error=error,
                             ehr_patient_id=ehr_patient_id, patient_account_id=account)
            code = failure.code  # the closure below may outlive the except clause, and its name

            async def announce_failed() -> None:
                await self._tell_failed(failed)
                if code in MAPPING_FIXES and account:
                    await self._heal_if_remapped(posting.key, account, ehr_patient_id)

            return await self._announced(
                Outcome(Disposition.DEAD_LETTER, posting.key, LoadStatus.FAILED, code), announce_failed)
        attempt = Attempt(at, _ms(started), "loaded")
        if not await self._postings.record_loaded(posting.key, attempt, request.ehr_patient_id, receipt.entry_id,
                                                  account):
            return Outcome(Disposition.ACK, posting.key)
        log.info("posting_loaded", posting=str(posting.key), duration_ms=attempt.duration_ms,
                 already_posted=receipt.already_posted)
        loaded = replace(posting, load_status=LoadStatus.LOADED, ehr_patient_id=request.ehr_patient_id,
                         patient_account_id=account)

        async def announce_loaded() -> None:
            await self._outcomes.loaded(loaded)
            if self.reactions is not None:
                await self.reactions.finished(loaded, had_failed=posting.load_status is LoadStatus.RETRYING)

        return await self._announced(Outcome(Disposition.ACK, posting.key, LoadStatus.LOADED), announce_loaded)

    async def _heal_if_remapped(self, key: PostingKey, account: str, tried: str | None) -> None:
        """A mapping entered between this payment's mapping read and its FAILED write: the office's
        fix looked for FAILED payments before this one was, so it is looked at again here."""
        held = await self._mappings.get(key.practice_id, account)
        if held and held != tried and self.remapped is not None:
            log.info("mapping_changed_while_failing", posting=str(key), patient_account_id=account)
            await self.remapped(key.practice_id, account)

    async def _prepare(self, posting: Posting, held: HeldMapping | None = None
                       ) -> tuple[str, str | None, LedgerEntryRequest]:
        """Find the patient and build the ledger entry; raises LoadFailure when a person must act.

        ``held`` is the payment's mapping when it was read already."""
        practice_id = posting.key.practice_id
        assert posting.amount is not None and posting.currency is not None
        if posting.kind is PostingKind.REFUND:
            assert posting.refunded_payment_id is not None
            original = await self._postings.get(PostingKey(practice_id, posting.refunded_payment_id))
            if original is None or original.load_status is not LoadStatus.LOADED or not original.ehr_patient_id:
                state = "not received" if original is None else original.load_status.value
                if original is not None and original.patient_account_id and not posting.patient_account_id:
                    posting = replace(posting, patient_account_id=original.patient_account_id)
                raise LoadFailure(
                    LoadErrorCode.ORIGINAL_PAYMENT_NOT_LOADED,
                    f"Payment {posting.refunded_payment_id} is {state}.",
                )
            return original.ehr_patient_id, original.patient_account_id, LedgerEntryRequest(
                practice_id=practice_id, ehr_patient_id=original.ehr_patient_id,
                posting_id=posting.key.payment_id, payment_id=posting.refunded_payment_id,
                refund_id=posting.key.payment_id, amount=-posting.amount, currency=posting.currency,
                occurred_at=posting.received_at,
            )
        assert posting.patient_account_id is not None
        held = held or await self._mapping_for(posting)
        assert held is not None  # a payment with its account: _mapping_for read it
        patient = choose_patient(held.ehr_patient_id, posting.event_ehr_patient_id)
        return patient.ehr_patient_id, posting.patient_account_id, LedgerEntryRequest(
            practice_id=practice_id, ehr_patient_id=patient.ehr_patient_id,
            posting_id=posting.key.payment_id, payment_id=posting.key.payment_id, refund_id=None,
            amount=posting.amount, currency=posting.currency, occurred_at=posting.received_at,
        )


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
