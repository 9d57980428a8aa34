"""A posting's outcome, recorded and announced in one place: written first, then its domain events
published, and what could not be published noted as owed.

The posting service (``handlers/posting.py``) decides what a delivery's outcome is; this records it.
An outcome is durable before its events: if they cannot all be sent (the broker went away between
the outcome and its event), the posting is marked as owing its outcome's event, in the database,
and the error goes up: the delivery is not settled, so it is handled again, in this process or,
redelivered, in any other, which finds the mark and announces the outcome instead of taking the
delivery for a duplicate. No worker keeps this to itself. At least once: a dashboard may see such
an event twice. What cannot be marked (the database is away too, or an event that is not an
outcome's) is kept in memory for this process's next try.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Sequence
from dataclasses import dataclass, replace

import structlog

from paypost.domain.errors import UnconfirmedWrite
from paypost.domain.events import Event, PostingFailed, PostingLoaded, PostingRetried, owed_as, owed_event
from paypost.domain.model import LoadStatus
from paypost.domain.ports.postings import PostingStore
from paypost.domain.posting import (
    Attempt,
    AuditEntry,
    FirstOutcome,
    Integration,
    KeptMessage,
    LedgerReceipt,
    Posting,
    PostingKey,
)
from paypost.domain.reversals import LEARNS_ITS_AMOUNT
from paypost.handlers import spans
from paypost.handlers.messagebus import MessageBus

log = structlog.get_logger("paypost.outcomes")

# Announcements kept in memory at most: a delivery that never comes back to this process (another
# took it) must not hold memory for ever. Without an outage of both services there are none.
MAX_UNANNOUNCED = 10_000


@dataclass(frozen=True, slots=True)
class First:
    """A new posting that has no row yet: its message and its "received" entry, written with its
    outcome, into the ledger of ``integration``: the one the delivery read, which keeps its entries
    in paypost's database (``PostingService._posts_with_its_row``)."""

    message: KeptMessage
    received: AuditEntry
    integration: Integration

    def __post_init__(self) -> None:
        if not self.integration.posts_with_its_row:
            raise ValueError("a first write loads only into a ledger kept in paypost's database")


class Written(enum.Enum):
    """What became of an outcome handed to ``OutcomeRecorder.finished``."""

    RECORDED = "recorded"  # written, and its events published
    MOVED_ON = "moved_on"  # the posting was no longer in flight: nothing written, nothing announced
    RACED = "raced"  # a first write: another delivery of the same posting wrote its row first


def _outcome_event(finished: Posting, had_failed: bool) -> PostingLoaded | PostingFailed:
    """The event that announces a LOADED or FAILED outcome."""
    if finished.load_status is LoadStatus.LOADED:
        return PostingLoaded(finished, had_failed=had_failed)
    return PostingFailed(finished)


class OutcomeRecorder:
    """Records each outcome of a posting and announces it; notes what it still owes."""

    def __init__(self, postings: PostingStore, bus: MessageBus, bound: int = MAX_UNANNOUNCED) -> None:
        self._postings = postings
        self._bus = bus
        self._bound = bound
        self._owed: dict[PostingKey, tuple[Event, ...]] = {}

    async def finished(self, posting: Posting, finished: Posting, attempt: Attempt, *, first: First | None = None,
                       receipt: LedgerReceipt | None = None) -> Written:
        """Write ``finished`` (``posting`` LOADED or FAILED, by ``attempt``), then announce it.

        ``first``: the posting has no row yet, and this outcome is its first write. ``receipt``: the
        ledger's, for a LOADED one; the built-in ledger's entry (``LedgerReceipt.entry``) is made by
        this same write."""
        had_failed = posting.load_status in (LoadStatus.RETRYING, LoadStatus.HELD)
        try:
            written = await self._write(posting, finished, attempt, first, receipt)
        except UnconfirmedWrite:
            self._keep(finished.key, (_outcome_event(finished, had_failed),))
            raise
        spans.write("insert_finished" if first is not None else f"record_{finished.load_status.value.lower()}",
                    "postings", written=written)
        if not written:
            return Written.RACED if first is not None else Written.MOVED_ON
        # A HELD posting may have been a retry: its task, if it has one, resolves.
        await self._recorded(finished, attempt, receipt, had_failed=had_failed)
        return Written.RECORDED

    async def finished_firsts(self, outcomes: Sequence[FirstOutcome]) -> list[Written | Exception]:
        """``finished`` for the first writes of several new postings at once (``outcomes``, each
        PENDING before): their rows in one insert, then each one's events. For each, RECORDED; RACED
        (its row was written first by another delivery: nothing written or announced); or the error
        that stopped it, its delivery to be handled again as after ``finished``. No span is told:
        the consumer handles a batch at once only with tracing off (``PostingService.handle_batch``)."""
        if not outcomes:
            return []
        written = await self._postings.insert_finished_many(outcomes)
        results: list[Written | Exception] = [
            w if isinstance(w, Exception) else Written.RECORDED if w else Written.RACED for w in written]
        for outcome, w in zip(outcomes, written, strict=True):
            if isinstance(w, UnconfirmedWrite):
                self._keep(outcome.posting.key, (_outcome_event(outcome.posting, had_failed=False),))
        recorded = [i for i, w in enumerate(written) if w is True]
        announced = await asyncio.gather(*(
            self._recorded(o.posting, o.attempt, o.receipt, had_failed=False) for o in (outcomes[i] for i in recorded)),
            return_exceptions=True)
        for index, done in zip(recorded, announced, strict=True):
            if isinstance(done, BaseException):
                if not isinstance(done, Exception):
                    raise done  # a cancel or an exit is not a posting's failure
                results[index] = done
        return results

    async def _recorded(self, finished: Posting, attempt: Attempt, receipt: LedgerReceipt | None, *,
                        had_failed: bool) -> None:
        """``finished`` is written: it is announced (what cannot be is owed, and the error raised)."""
        key = finished.key
        spans.outcome(key, finished.load_status, finished.load_error.code if finished.load_error else None)
        if finished.load_status is LoadStatus.LOADED:
            log.info("posting_loaded", posting=str(key), duration_ms=attempt.duration_ms,
                     already_posted=receipt is not None and receipt.already_posted)
        else:
            assert finished.load_error is not None
            log.info("posting_failed", posting=str(key), error_code=finished.load_error.code.value)
        await self.announce(key, _outcome_event(finished, had_failed))

    async def _write(self, posting: Posting, finished: Posting, attempt: Attempt, first: First | None,
                     receipt: LedgerReceipt | None) -> bool:
        entry_id, ledger_entry = (receipt.entry_id, receipt.entry) if receipt is not None else (None, None)
        if first is not None:
            return await self._postings.insert_finished(finished, first.message, first.received, attempt, entry_id,
                                                        ledger_entry)
        if finished.load_status is LoadStatus.LOADED:
            assert finished.ehr_patient_id is not None and entry_id is not None
            # A void's and a won dispute's amount is learnt as they load (handlers/reversals.py).
            settled = ((finished.amount, finished.currency) if finished.kind in LEARNS_ITS_AMOUNT
                       and finished.amount is not None and finished.currency else None)
            return await self._postings.record_loaded(posting.key, attempt, finished.ehr_patient_id, entry_id,
                                                      finished.patient_account_id, settled, ledger_entry)
        assert finished.load_error is not None
        return await self._postings.record_failed(posting.key, attempt, finished.load_error,
                                                  finished.ehr_patient_id, finished.patient_account_id,
                                                  posting.refunded_payment_id)

    async def retried_and_loaded(self, posting: Posting, loaded: Posting, attempt: Attempt, retry: AuditEntry,
                                 token: str, receipt: LedgerReceipt) -> bool:
        """Write a FAILED posting LOADED by retry ``token`` in one write, then announce both: that it was
        retried and that it loaded. False if it was no longer retryable (nothing written or announced)."""
        assert loaded.ehr_patient_id is not None
        written = await self._postings.retried_and_loaded(posting.key, token, retry, attempt, loaded.ehr_patient_id,
                                                          receipt.entry_id, loaded.patient_account_id, receipt.entry)
        spans.write("retried_and_loaded", "postings", written=written)
        if not written:
            return False
        spans.outcome(posting.key, LoadStatus.LOADED, None)
        log.info("posting_loaded", posting=str(posting.key), duration_ms=attempt.duration_ms, retried_here=True)
        retrying = replace(posting, load_status=LoadStatus.RETRYING, load_error=None, replays=posting.replays + 1)
        await self.announce(posting.key, PostingRetried(retrying, retry), PostingLoaded(loaded, had_failed=True))
        return True

    async def retried(self, fresh: Posting, message: KeptMessage, correction: AuditEntry, *,
                      replays: int) -> Posting | None:
        """A FAILED posting republished with a new body becomes RETRYING, announced; None if it was not FAILED."""
        claimed = await self._postings.claim_for_replay(fresh, message, correction)
        spans.write("claim_for_replay", "postings", written=claimed)
        if not claimed:
            return None
        retrying = replace(fresh, load_status=LoadStatus.RETRYING, replays=replays)
        await self.announce(fresh.key, PostingRetried(retrying, correction))
        return retrying

    async def unreadable(self, posting: Posting, message: KeptMessage, audit: AuditEntry) -> PostingKey:
        """Keep an unreadable message as a FAILED row of its own, announced; seen before (a redelivery,
        or back from the dead-letter queue), only what its first time still owes is announced."""
        key, created = await self._postings.insert_unreadable(posting, message, audit)
        spans.write("insert_unreadable", "postings", written=created)
        if posting.load_error is not None:
            spans.outcome(key, LoadStatus.FAILED, posting.load_error.code)
        if not created:
            seen = await self._postings.get(key)
            if seen is not None:
                await self.settle_owed(seen)
            return key
        assert posting.load_error is not None
        log.warning("message_unreadable", posting=str(key), error_code=posting.load_error.code.value,
                    routing_key=message.routing_key[:100])
        await self.announce(key, PostingFailed(replace(posting, key=key)))
        return key

    async def announce(self, key: PostingKey, *events: Event) -> None:
        """Publish the events of ``key``'s outcome; if that fails they are owed, and the error raised."""
        try:
            await self._bus.publish(*events)
        except BaseException:
            await self._owe(key, events)
            raise

    async def _owe(self, key: PostingKey, events: tuple[Event, ...]) -> None:
        owed = [kind for kind in map(owed_as, events) if kind is not None]
        if len(owed) == len(events) == 1:
            try:
                await self._postings.owe_announcement(key, owed[0])
                return
            except Exception as exc:  # noqa: BLE001 - the database is away too: kept here instead
                log.warning("announcement_kept_in_memory", posting=str(key), error=type(exc).__name__)
        self._keep(key, events)

    def _keep(self, key: PostingKey, events: tuple[Event, ...]) -> None:
        """Keep ``key``'s events in this process until its delivery, handled again, finds its row
        (``settle_owed``): the broker was away, or the database applied the row without confirming it."""
        if len(self._owed) >= self._bound and key not in self._owed:
            dropped = next(iter(self._owed))
            del self._owed[dropped]
            log.error("announcement_dropped", posting=str(dropped), kept=self._bound)
        self._owed[key] = events

    async def settle_owed(self, posting: Posting) -> bool:
        """Announce what ``posting`` still owes, if anything; whether something was owed (and is now sent)."""
        noted = owed_event(posting)
        events = (noted,) if noted is not None else self._owed.pop(posting.key, None)
        if events is None:
            return False
        log.info("outcome_announced_late", posting=str(posting.key))
        await self.announce(posting.key, *events)
        if noted is not None:
            await self._postings.announced(posting.key)
        return True

    def owes(self, posting: Posting) -> bool:
        """Whether the posting's outcome is durable but not yet announced (the broker was away)."""
        return posting.announcement_owed is not None or posting.key in self._owed
