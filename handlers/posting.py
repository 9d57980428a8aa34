"""The posting service: load one payment, refund or reversal into its practice's ledger, exactly once."""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import datetime

import structlog

from paypost.domain.errors import LedgerUnreachable, LoadFailure
from paypost.domain.load_errors import LoadErrorCode, load_error
from paypost.domain.model import Delivery, LoadStatus, PostingKind, choose_patient, decide_delivery
from paypost.domain.outages import PracticeOutage
from paypost.domain.ports.ledgers import Ledger, LedgerFactory
from paypost.domain.ports.postings import PostingStore
from paypost.domain.ports.practices import MappingStore, PracticeDirectory
from paypost.domain.posting import (
    PAYPOST_ACTOR,
    Attempt,
    AuditEntry,
    FirstOutcome,
    Integration,
    KeptMessage,
    LedgerReceipt,
    Posting,
    PostingKey,
)
from paypost.domain.reversals import FOLLOWS_A_PAYMENT
from paypost.handlers import metrics, spans
from paypost.handlers.clock import Clock, utc_now
from paypost.handlers.outages import Outages
from paypost.handlers.outcomes import First, OutcomeRecorder, Written
from paypost.handlers.reversals import (
    REVERSAL_MESSAGES,
    Against,
    ReversalMessage,
    Reversals,
    entry_for,
    failure_account,
    refund_posting,
    reversal_posting,
)
from paypost.schemas.messages import INBOUND_MESSAGES, DisputeClosed, DisputeOutcome, PaymentPosted, PaymentRefunded
from paypost.schemas.reading import Unreadable, read_message
from paypost.schemas.topics import (
    DISPUTE_CLOSED,
    PAYMENT_DISPUTED,
    PAYMENT_POSTED,
    PAYMENT_REFUNDED,
    PAYMENT_RETURNED,
    PAYMENT_VOIDED,
    REPLAYS_HEADER,
)

PostingMessage = PaymentPosted | PaymentRefunded | ReversalMessage
POSTING_MESSAGES = (PaymentPosted, PaymentRefunded, *REVERSAL_MESSAGES)
INTAKE_MESSAGES = {key: INBOUND_MESSAGES[key] for key in (
    PAYMENT_POSTED, PAYMENT_REFUNDED, PAYMENT_VOIDED, PAYMENT_RETURNED, PAYMENT_DISPUTED, DISPUTE_CLOSED)}

log = structlog.get_logger("paypost.posting")

_First = tuple[int, KeptMessage, PaymentPosted]  # a batch's first delivery of a payment: its place, message, read


class Disposition(enum.Enum):
    """What the consumer does with the delivery once the outcome is durable."""

    ACK = "ack"
    DEAD_LETTER = "dead_letter"


@dataclass(frozen=True, slots=True)
class Outcome:
    disposition: Disposition
    key: PostingKey
    load_status: LoadStatus | None = None
    error_code: LoadErrorCode | None = None


@dataclass(frozen=True, slots=True)
class HeldMapping:
    """A patient account's mapping as read: the practice-management id, or None (not mapped)."""

    ehr_patient_id: str | None


def posting_from(message: PostingMessage, received_at: datetime) -> Posting:
    """The new PENDING posting a payment, refund or reversal message stands for."""
    if isinstance(message, REVERSAL_MESSAGES):  # the month it belongs to is its occurred_at's (section 11)
        return replace(reversal_posting(message, received_at), occurred_at=message.occurred_at)
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
            occurred_at=message.occurred_at,
        )
    return replace(refund_posting(message, received_at), occurred_at=message.occurred_at)


def posts_nothing(message: PostingMessage) -> bool:
    """A lost dispute posts nothing more: the chargeback stands (contract section 10)."""
    return isinstance(message, DisputeClosed) and message.outcome is DisputeOutcome.LOST


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
    """Loads payments and refunds: decides each delivery's outcome, which ``outcomes`` records and
    announces (``handlers/outcomes.py``) before the message is settled."""

    def __init__(
        self,
        postings: PostingStore,
        practices: PracticeDirectory,
        mappings: MappingStore,
        ledgers: LedgerFactory,
        outcomes: OutcomeRecorder,
        max_message_bytes: int,
        outages: Outages,
        reversals: Reversals,
        clock: Clock = utc_now,
    ) -> None:
        self._postings = postings
        self._practices = practices
        self._mappings = mappings
        self._ledgers = ledgers
        self._outcomes = outcomes
        self._max_bytes = max_message_bytes
        self._outages = outages
        self._board = outages.board
        self._clock = clock
        self._reversals = reversals

    def read(self, message: KeptMessage) -> PostingMessage | Unreadable:
        """Read a delivery of the intake queue: a payment, a refund, a reversal, or an unreadable message."""
        read = read_message(message, self._max_bytes, INTAKE_MESSAGES)
        assert isinstance(read, (*POSTING_MESSAGES, Unreadable))  # the models asked for
        return read

    async def handle_batch(self, messages: Sequence[KeptMessage], *,
                           each: Callable[[KeptMessage], AbstractContextManager[object]] | None = None,
                           ) -> list[Outcome | Exception]:
        """Receive a batch of deliveries together; their database calls go in shared round trips.

        Each message gets its own result: its outcome, or the error that stopped it (each is
        safe to handle again), so one message's failure never holds up the others. ``each``: a
        context each message is handled in (its consumer span: ``infra/rabbit/intake.py``).
        """
        async def one(message: KeptMessage, read: PostingMessage | Unreadable | None) -> Outcome:
            if each is None:
                return await self.handle(message, read=read)
            with each(message):
                return await self.handle(message, read=read)

        results: list[Outcome | Exception | None] = [None] * len(messages)
        reads: list[PostingMessage | Unreadable | None] = [None] * len(messages)
        if each is None:  # no span of its own for each message (tracing off): the first loads go together
            await self._first_payments(messages, results, reads)
        rest = [i for i, result in enumerate(results) if result is None]
        alone = await asyncio.gather(*(one(messages[i], reads[i]) for i in rest), return_exceptions=True)
        for index, result in zip(rest, alone, strict=True):
            if isinstance(result, BaseException) and not isinstance(result, Exception):
                raise result  # a cancel or an exit is not a message's failure
            results[index] = result
        return results  # type: ignore[return-value]  # every message has its Outcome or Exception now

    async def _first_payments(self, messages: Sequence[KeptMessage], results: list[Outcome | Exception | None],
                              reads: list[PostingMessage | Unreadable | None]) -> None:
        """Load together the batch's first deliveries of payments into ledgers kept in paypost's
        database (the busy case): one read of their mappings, each decided as ``_load`` decides it,
        their rows in one insert, then each one's events (``OutcomeRecorder.finished_firsts``). Each
        result lands in ``results``; a delivery whose row was there already (a duplicate in the batch,
        a redelivery) goes on as ``_raced``. Every other message is left, read (``reads``), for ``handle``."""
        firsts, integrations = await self._firsts_of(messages, results, reads)
        if not firsts:
            return
        metrics.RECEIVED.labels(PostingKind.PAYMENT.value).inc(len(firsts))
        try:
            mapped = await self._mappings.get_many(
                {(read.practice_id, read.patient_account_id) for _, _, read in firsts if read.patient_account_id})
        except Exception as exc:  # noqa: BLE001 - each delivery's result, as when each read its own mapping
            for index, _, _ in firsts:
                results[index] = exc
            return
        tried = await asyncio.gather(*(
            self._decide_first(message, read, integration=integrations[read.practice_id][0],
                               ledger=integrations[read.practice_id][1],
                               mapped=mapped.get((read.practice_id, read.patient_account_id))
                               if read.patient_account_id else None)
            for _, message, read in firsts), return_exceptions=True)
        decided: list[tuple[int, tuple[FirstOutcome, First, Posting]]] = []
        for (index, _, _), decision in zip(firsts, tried, strict=True):
            if isinstance(decision, BaseException):  # a fault it alone meets: it alone goes back
                results[index] = _its_own(decision)
            else:
                decided.append((index, decision))
        written = await self._outcomes.finished_firsts([first_outcome for _, (first_outcome, _, _) in decided])
        raced: list[tuple[int, Posting, First]] = []
        for (index, (first_outcome, first, fresh)), write in zip(decided, written, strict=True):
            if write is Written.RACED:
                raced.append((index, fresh, first))
            else:
                results[index] = write if isinstance(write, Exception) else _recorded_outcome(first_outcome.posting)
        again = await asyncio.gather(*(self._raced(posting, first) for _, posting, first in raced),
                                     return_exceptions=True)
        for (index, _, _), result in zip(raced, again, strict=True):
            results[index] = _its_own(result) if isinstance(result, BaseException) else result

    async def _firsts_of(self, messages: Sequence[KeptMessage], results: list[Outcome | Exception | None],
                         reads: list[PostingMessage | Unreadable | None],
                         ) -> tuple[list[_First], dict[str, tuple[Integration, Ledger]]]:
        """Each message read (into ``reads``; a fault in reading one is its result); the first
        deliveries of payments whose practice's postings are written once, with their outcome
        (``_posts_with_its_row``), and those practices' integrations and ledgers. A replay is not
        read here: its row exists, and ``handle`` looks it up."""
        firsts: list[_First] = []
        for index, message in enumerate(messages):
            if REPLAYS_HEADER in message.headers:
                continue
            try:
                read = reads[index] = self.read(message)
            except Exception as exc:  # noqa: BLE001 - a fault this message alone meets: its own result
                results[index] = exc
                continue
            if type(read) is PaymentPosted:
                firsts.append((index, message, read))
        integrations: dict[str, tuple[Integration, Ledger]] = {}
        for practice_id in {read.practice_id for _, _, read in firsts}:
            try:
                integration = await self._practices.integration(practice_id)
                if integration is not None and await self._posts_with_its_row(integration):
                    integrations[practice_id] = integration, self._ledgers.for_integration(integration)
            except Exception as exc:  # noqa: BLE001 - the result of each of its deliveries, as when each read it
                for index, _, read in firsts:
                    if read.practice_id == practice_id:
                        results[index] = exc
        return [first for first in firsts if first[2].practice_id in integrations], integrations

    async def _decide_first(self, message: KeptMessage, read: PaymentPosted, *, integration: Integration,
                            ledger: Ledger, mapped: str | None) -> tuple[FirstOutcome, First, Posting]:
        """A new payment's outcome, decided as ``_load`` decides a first write's (``mapped``: its
        account's mapping as read, None if it has none or names no account), with its ``First`` and
        its PENDING posting; nothing is written."""
        now = message.arrived_at or self._clock()
        fresh = posting_from(read, now)
        received = AuditEntry(at=now, actor=PAYPOST_ACTOR, action="received",
                              detail=f"event {read.event_id} via {message.routing_key}")
        started, at = time.perf_counter(), self._clock()
        ehr_patient_id: str | None = None
        try:
            ehr_patient_id = choose_patient(mapped, fresh.event_ehr_patient_id).ehr_patient_id
            receipt = await ledger.post(entry_for(fresh, ehr_patient_id, None))
        except LoadFailure as failure:
            error = load_error(failure.code, failure.detail)
            failed = replace(fresh, load_status=LoadStatus.FAILED, load_error=error, ehr_patient_id=ehr_patient_id,
                             patient_account_id=failure_account(failure, fresh.patient_account_id))
            outcome = FirstOutcome(failed, message, received, Attempt(at, _ms(started), "failed", error))
        else:
            loaded = replace(fresh, load_status=LoadStatus.LOADED, ehr_patient_id=ehr_patient_id)
            outcome = FirstOutcome(loaded, message, received, Attempt(at, _ms(started), "loaded"), receipt)
        return outcome, First(message, received, integration), fresh

    async def handle(self, message: KeptMessage, *, trying: bool = False,
                     read: PostingMessage | Unreadable | None = None) -> Outcome:
        """Receive one delivery. Safe to call again for the same delivery: it never posts twice.

        ``trying``: the outage worker loads a parked posting at its failing or held system
        (``handlers/outages.py``): no answer raises ``LedgerUnreachable`` instead of parking it.
        ``read``: the message as ``read`` read it already."""
        read = read if read is not None else self.read(message)
        if isinstance(read, Unreadable):
            return await self.keep_unreadable(read, message)
        if posts_nothing(read):
            assert isinstance(read, DisputeClosed)
            log.info("dispute_lost", posting=f"{read.practice_id}/{read.dispute_id}")
            return Outcome(Disposition.ACK, PostingKey(read.practice_id, read.dispute_id))
        now = message.arrived_at or self._clock()
        fresh = posting_from(read, now)
        spans.payment(fresh.key)
        metrics.RECEIVED.labels(fresh.kind.value).inc()
        received = AuditEntry(
            at=now, actor=PAYPOST_ACTOR, action="received",
            detail=f"event {read.event_id} via {message.routing_key}",
        )
        # A replay's row exists (paypost kept its message): look it up rather than try to insert.
        replayed = REPLAYS_HEADER in message.headers
        # The patient's mapping is read while the PENDING row is written, or while a replay's row
        # is read (one round trip fewer in series); a mapping entered after this read is caught
        # by the self-healing's check of a mapping failure (handlers/healing.py).
        if not replayed:
            # The practice's integration is read once for the delivery (from a cache, as a rule): the
            # ledger a first write loads into is the one that chose to write it with its outcome.
            integration = None if trying else await self._practices.integration(fresh.key.practice_id)
            if await self._posts_with_its_row(integration):
                assert integration is not None
                if fresh.kind is PostingKind.PAYMENT:
                    # Insert first: a payment's row is looked up only if its outcome's insert finds it
                    # taken (``_raced``), so a first delivery waits for one read, its mapping, not two.
                    # A refund or reversal is counted against its payment before its entry: it looks first.
                    return await self._load(fresh, await self._mapping_for(fresh),
                                            first=First(message, received, integration))
                existing, held = await asyncio.gather(self._postings.get(fresh.key), self._mapping_for(fresh))
                if existing is None:
                    return await self._load(fresh, held, first=First(message, received, integration))
                return await self._known(existing, fresh, message, held, trying)
            inserted, held = await asyncio.gather(
                self._postings.insert_received(fresh, message, received), self._mapping_for(fresh))
            spans.write("insert_received", "postings", written=inserted)
            if inserted:
                return await self._load(fresh, held, trying=trying)
            existing = await self._postings.get(fresh.key)
        else:
            existing, held = await asyncio.gather(self._postings.get(fresh.key), self._mapping_for(fresh))
        if existing is None:
            if replayed and await self._postings.insert_received(fresh, message, received):
                return await self._load(fresh, held, trying=trying)
            return Outcome(Disposition.ACK, fresh.key)  # deleted in between: nothing paypost does
        return await self._known(existing, fresh, message, held, trying)

    async def retry_here(self, practice_id: str, keys: Sequence[PostingKey], token: str,
                         retry: AuditEntry) -> set[PostingKey]:
        """Retry, in this process, the FAILED payments among ``keys`` that load now into a ledger in
        paypost's database (the built-in ledger, no hold): each is claimed and made LOADED by one
        write, announced as retried and loaded, with no trip through the queue and no RETRYING
        state a crash could leave. The keys it loaded; every other (a refund or reversal, a load
        that would fail again, another ledger kind) is for the queue, as before."""
        integration = await self._practices.integration(practice_id)
        if not await self._posts_with_its_row(integration):
            return set()
        ledger, _ = await self._ledger_for(practice_id, integration)
        postings = await self._postings.retryable_payments(keys, token)
        # A chunk is as a rule one account's (a heal after its mapping was entered): its mapping read once.
        accounts = list({p.patient_account_id for p in postings if p.patient_account_id is not None})
        mapped = dict(zip(accounts, await asyncio.gather(*(self._mappings.get(practice_id, a) for a in accounts)),
                          strict=True))
        loaded = await asyncio.gather(*(
            self._retry_here(ledger, p, mapped.get(p.patient_account_id) if p.patient_account_id else None, token,
                             retry) for p in postings))
        return {p.key for p, done in zip(postings, loaded, strict=True) if done}

    async def _retry_here(self, ledger: Ledger, posting: Posting, mapped: str | None, token: str,
                          retry: AuditEntry) -> bool:
        started, at = time.perf_counter(), self._clock()
        try:
            ehr_patient_id = choose_patient(mapped, posting.event_ehr_patient_id).ehr_patient_id
            receipt = await ledger.post(entry_for(posting, ehr_patient_id, None))
        except LoadFailure:
            return False  # it fails again: through the queue, to fail (and be dead-lettered) as any retry does
        loaded = replace(posting, load_status=LoadStatus.LOADED, load_error=None, ehr_patient_id=ehr_patient_id,
                         replays=posting.replays + 1)
        return await self._outcomes.retried_and_loaded(posting, loaded, Attempt(at, _ms(started), "loaded"), retry,
                                                        token, receipt)

    async def _posts_with_its_row(self, integration: Integration | None) -> bool:
        """Whether a new posting of the practice is written once, with its outcome: its ledger is in
        paypost's database (``Integration.posts_with_its_row``) and nothing holds its payments."""
        return (integration is not None and integration.enabled and integration.posts_with_its_row
                and await self._board.of(integration.practice_id) is None)

    async def _known(self, existing: Posting, fresh: Posting, message: KeptMessage,
                     held: HeldMapping | None, trying: bool = False) -> Outcome:
        """A delivery of a posting paypost holds already: what it means depends on where that stands."""
        match decide_delivery(existing.load_status):
            case Delivery.ALREADY_DONE:
                await self._outcomes.settle_owed(existing)
                log.info("duplicate_ignored", posting=str(fresh.key), load_status=existing.load_status.value)
                return Outcome(Disposition.ACK, fresh.key, existing.load_status)
            case Delivery.REPLAY_NEW_BODY if existing.event_id == fresh.event_id:
                # The same event delivered again (not an upstream correction): nothing new to try.
                return await self._already_failed(existing)
            case Delivery.REPLAY_NEW_BODY:
                correction = AuditEntry(
                    at=self._clock(), actor=PAYPOST_ACTOR, action="retry",
                    reason="republished by the payments platform while FAILED",
                    detail=f"event {fresh.event_id}",
                )
                retrying = await self._outcomes.retried(fresh, message, correction, replays=existing.replays)
                if retrying is None:  # no longer FAILED
                    return Outcome(Disposition.ACK, fresh.key)
                return await self._load(retrying)
            case Delivery.LOAD:
                same_account = existing.patient_account_id == fresh.patient_account_id
                return await self._load(existing, held if same_account else None, trying=trying)

    async def _already_failed(self, existing: Posting) -> Outcome:
        """The same event of a FAILED posting again. If its failure's announcement is owed, this
        is the delivery that failed (handled again): announced now, it goes to the dead letters
        as it would have; otherwise a duplicate, acknowledged (the posting keeps its message)."""
        if await self._outcomes.settle_owed(existing):
            code = existing.load_error.code if existing.load_error else None
            return Outcome(Disposition.DEAD_LETTER, existing.key, existing.load_status, code)
        return Outcome(Disposition.ACK, existing.key, existing.load_status)

    async def keep_unreadable(self, unreadable: Unreadable, message: KeptMessage) -> Outcome:
        """Give an unreadable message a FAILED row of its own; it is then dead-lettered."""
        now = self._clock()
        posting = unreadable_posting(unreadable, now)
        audit = AuditEntry(at=now, actor=PAYPOST_ACTOR, action="failed", detail=unreadable.detail)
        key = await self._outcomes.unreadable(posting, message, audit)
        return Outcome(Disposition.DEAD_LETTER, key, LoadStatus.FAILED, unreadable.code)

    async def fail_unfinished(self, posting: Posting, detail: str, at: datetime) -> bool:
        """An in-flight posting that paypost could not finish loading (its message reached the
        dead letters without an outcome) becomes FAILED, LEDGER_UNAVAILABLE, for a person to see.

        False if it was not in flight any more (or, on a second call, already failed by the first;
        what that first call could not announce is announced now)."""
        error = load_error(LoadErrorCode.LEDGER_UNAVAILABLE, detail)
        # No patient was tried: the row's ehr_patient_id is cleared.
        failed = replace(posting, load_status=LoadStatus.FAILED, load_error=error, ehr_patient_id=None)
        if await self._outcomes.finished(posting, failed, Attempt(at, 0.0, "failed", error)) is Written.RECORDED:
            return True
        await self._outcomes.settle_owed(posting)
        return False

    async def _park(self, posting: Posting, outage: PracticeOutage, account: str | None,
                    first: First | None = None) -> Outcome:
        """The posting waits for its practice's system; its delivery is settled (the row keeps it)."""
        if first is not None:  # held since it was looked at: its row is written now, to wait in
            await self._postings.insert_received(posting, first.message, first.received)
        parked = await self._outages.park(replace(posting, patient_account_id=account), outage)
        log.info("posting_parked", posting=str(posting.key), practice_health=outage.health.value)
        return Outcome(Disposition.ACK, posting.key, parked.load_status)

    async def _mapping_for(self, posting: Posting) -> HeldMapping | None:
        """The mapping a payment will be loaded with (None for a refund, which follows its payment)."""
        if posting.kind is not PostingKind.PAYMENT or posting.patient_account_id is None:
            return None
        return HeldMapping(await self._mappings.get(posting.key.practice_id, posting.patient_account_id))

    async def _ledger_for(self, practice_id: str, integration: Integration | None = None) -> tuple[Ledger, bool]:
        """The practice's ledger (by ``integration`` when the delivery read it already), and whether it is
        a call out of paypost's database (not the built-in ledger); ``LoadFailure(INTEGRATION_NOT_CONFIGURED)``
        without an enabled one."""
        integration = integration or await self._practices.integration(practice_id)
        if integration is None or not integration.enabled:
            raise LoadFailure(LoadErrorCode.INTEGRATION_NOT_CONFIGURED)
        return self._ledgers.for_integration(integration), not integration.posts_with_its_row

    async def _maybe_posted(self, posting: Posting, at: datetime) -> bool:
        """Whether an earlier call may have reached the practice's system with its answer lost, as the
        posting's row says (``Posting.sent_at``): one was sent before, in any process, before a crash,
        a park, a hold or an operator's retry. This call is noted on the row before it is sent."""
        return posting.sent_at is not None or not await self._postings.mark_sent(posting.key, at)

    async def _load(self, posting: Posting, held: HeldMapping | None = None, *, trying: bool = False,
                    first: First | None = None) -> Outcome:
        """Load the posting; ``first``: it has no row yet, and its outcome is its first write, into the
        ledger of the integration the delivery read (one in paypost's database, with nothing holding it)."""
        started = time.perf_counter()
        at = self._clock()
        ehr_patient_id: str | None = None
        account = posting.patient_account_id
        against: Against | None = None  # a refund's or reversal's payment (handlers/reversals.py)
        counted = False
        try:
            ehr_patient_id, account, against = await self._patient_of(posting, held)
            ledger, calls_out = await self._ledger_for(posting.key.practice_id,
                                                       first.integration if first is not None else None)
            # A first write's practice was looked up on the board just before (_posts_with_its_row).
            outage = None if trying or first is not None else await self._board.of(posting.key.practice_id)
            if outage is not None:  # its system is failing or held: the payment waits, off the queue
                return await self._park(posting, outage, account, first)
            if against is not None:  # counted against its payment just before its entry, undone if it fails
                posting = await self._reversals.count(posting, against)
                counted = True
            entry = entry_for(posting, ehr_patient_id, against)
            if calls_out:
                entry = replace(entry, maybe_posted=await self._maybe_posted(posting, at))
            try:
                receipt = await ledger.post(entry)
            except LedgerUnreachable as exc:
                if trying:
                    raise
                return await self._park(posting, await self._outages.unanswered(posting.key.practice_id, str(exc)),
                                        account, first)
        except LoadFailure as failure:
            if counted and against is not None:
                await self._reversals.give_back(posting, against)
            error = load_error(failure.code, failure.detail)
            failed = replace(posting, load_status=LoadStatus.FAILED, load_error=error,
                             ehr_patient_id=ehr_patient_id, patient_account_id=failure_account(failure, account))
            return await self._finish(posting, failed, Attempt(at, _ms(started), "failed", error), first)
        loaded = replace(posting, load_status=LoadStatus.LOADED, ehr_patient_id=ehr_patient_id,
                         patient_account_id=account)
        return await self._finish(posting, loaded, Attempt(at, _ms(started), "loaded"), first, receipt)

    async def _patient_of(self, posting: Posting, held: HeldMapping | None,
                          ) -> tuple[str, str | None, Against | None]:
        """The patient a posting loads to, its patient account, and a refund's or reversal's payment.
        ``LoadFailure`` if none can be chosen (a refund's or reversal's: its payment has not loaded)."""
        if posting.kind in FOLLOWS_A_PAYMENT:
            # Its payment's patient, known before it can load: its failure, too, belongs to the patient.
            against = await self._reversals.against(posting)  # WaitsForPayment names the account too
            return against.ehr_patient_id, against.patient_account_id or posting.patient_account_id, against
        held = held or await self._mapping_for(posting)
        choice = choose_patient(held.ehr_patient_id if held else None, posting.event_ehr_patient_id)
        return choice.ehr_patient_id, posting.patient_account_id, None

    async def _finish(self, posting: Posting, finished: Posting, attempt: Attempt, first: First | None,
                      receipt: LedgerReceipt | None = None) -> Outcome:
        """The delivery's end once ``finished`` (LOADED or FAILED) is recorded and announced, or what
        it does instead (the posting was no longer in flight, or another delivery wrote its row first).
        The built-in ledger's entry (``receipt.entry``) is made by the outcome's write, or not at all."""
        written = await self._outcomes.finished(posting, finished, attempt, first=first, receipt=receipt)
        if written is Written.RACED:
            assert first is not None
            return await self._raced(posting, first)
        if written is Written.MOVED_ON:
            return Outcome(Disposition.ACK, posting.key)
        return _recorded_outcome(finished)

    async def _raced(self, posting: Posting, first: First) -> Outcome:
        """Another delivery of the same payment wrote its row first (an upstream's duplicate publish,
        or a redelivery while this one was handled): this delivery goes on as one of a known posting
        (a LOADED one is a duplicate; an in-flight one loads, its entry found by its key)."""
        existing = await self._postings.get(posting.key)
        if existing is None:  # deleted in between: nothing paypost does
            return Outcome(Disposition.ACK, posting.key)
        return await self._known(existing, posting, first.message, None)


def _its_own(error: BaseException) -> Exception:
    """One message's failure, as its result; a cancel or an exit is not a message's failure: raised."""
    if not isinstance(error, Exception):
        raise error
    return error


def _recorded_outcome(finished: Posting) -> Outcome:
    """A delivery's end once its outcome ``finished`` (LOADED or FAILED) is recorded and announced."""
    if finished.load_status is LoadStatus.LOADED:
        return Outcome(Disposition.ACK, finished.key, LoadStatus.LOADED)
    assert finished.load_error is not None
    return Outcome(Disposition.DEAD_LETTER, finished.key, LoadStatus.FAILED, finished.load_error.code)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
