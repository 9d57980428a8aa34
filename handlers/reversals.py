"""Refunds and reversals (contract section 10): what a posting that follows a payment goes with,
and its count against the payment (``paypost.domain.reversals``).

The posting service (``handlers/posting.py``) loads every posting the same way; for one that
follows a payment it asks this module whom the entry goes to, and counts it against the payment
just before the entry is posted (undone if the entry fails), so that refunds and reversals of one
payment never take back more than the payment, however many workers load them at once.

Exactly once, through crashes: the count is written (durably) before the entry, and names the
posting, so a delivery handled again finds its count and goes on to find its entry by its key.
Killed between the count and the entry, or between the entry and the outcome, the redelivery ends
LOADED with one entry, counted once. An entry the ledger refuses gives its count back before the
FAILED outcome is written (killed in between, the redelivery counts and fails again). A posting
waiting for its practice's system (HELD) keeps its count: it loads by itself. One that the dead
letters fail as LEDGER_UNAVAILABLE keeps it too, since its entry may have been made: what is left
of the payment is then understated, never overstated, until it is retried (counted as before) or
cleared.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

import structlog

from paypost.domain.errors import LoadFailure
from paypost.domain.load_errors import LoadErrorCode
from paypost.domain.model import LoadStatus, PostingKind
from paypost.domain.ports.postings import PostingStore
from paypost.domain.ports.reversals import PaymentBalances
from paypost.domain.posting import LedgerEntryRequest, Posting, PostingKey
from paypost.domain.reversals import (
    REVERSAL_KINDS,
    Taken,
    WaitsForPayment,
    counted_against,
    entry_sign,
    followed,
    left_of,
    won_id,
)
from paypost.schemas.messages import (
    DisputeClosed,
    PaymentDisputed,
    PaymentRefunded,
    PaymentReturned,
    PaymentVoided,
)

log = structlog.get_logger("paypost.reversals")

ReversalMessage = PaymentVoided | PaymentReturned | PaymentDisputed | DisputeClosed
REVERSAL_MESSAGES = (PaymentVoided, PaymentReturned, PaymentDisputed, DisputeClosed)


def reversal_posting(message: ReversalMessage, received_at: datetime) -> Posting:
    """The new PENDING posting a void, return, chargeback or won dispute stands for.

    A void's amount is what is left of its payment, and a won dispute's its chargeback's: both are
    known when they load (``Against``)."""
    practice = message.practice_id
    match message:
        case PaymentVoided():
            key, kind, follows = PostingKey(practice, message.void_id), PostingKind.VOID, message.payment_id
            return Posting(key=key, kind=kind, load_status=LoadStatus.PENDING, event_id=message.event_id,
                           received_at=received_at, refunded_payment_id=follows)
        case PaymentReturned():
            return Posting(key=PostingKey(practice, message.return_id), kind=PostingKind.RETURN,
                           load_status=LoadStatus.PENDING, event_id=message.event_id, received_at=received_at,
                           amount=message.amount, currency=message.currency, refunded_payment_id=message.payment_id,
                           return_code=message.return_code, fee_amount=message.fee_amount)
        case PaymentDisputed():
            return Posting(key=PostingKey(practice, message.dispute_id), kind=PostingKind.CHARGEBACK,
                           load_status=LoadStatus.PENDING, event_id=message.event_id, received_at=received_at,
                           amount=message.amount, currency=message.currency, refunded_payment_id=message.payment_id)
        case DisputeClosed():
            # A won dispute follows its chargeback: it waits for the dispute to load.
            return Posting(key=PostingKey(practice, won_id(message.dispute_id)), kind=PostingKind.DISPUTE_WON,
                           load_status=LoadStatus.PENDING, event_id=message.event_id, received_at=received_at,
                           refunded_payment_id=message.dispute_id)


def refund_posting(message: PaymentRefunded, received_at: datetime) -> Posting:
    return Posting(key=PostingKey(message.practice_id, message.refund_id), kind=PostingKind.REFUND,
                   load_status=LoadStatus.PENDING, event_id=message.event_id, received_at=received_at,
                   amount=message.amount, currency=message.currency, refunded_payment_id=message.payment_id)


@dataclass(frozen=True, slots=True)
class Against:
    """What a refund or reversal goes with: the payment it is against and its patient."""

    payment: Posting
    ehr_patient_id: str
    patient_account_id: str | None
    amount: Decimal | None  # None for a void: what is left, known when it is counted
    currency: str | None


class Reversals:
    """Whom a refund or reversal goes to, and its count against its payment."""

    def __init__(self, postings: PostingStore, balances: PaymentBalances) -> None:
        self._postings = postings
        self._balances = balances

    async def against(self, posting: Posting) -> Against:
        """The payment ``posting`` is against, once what it follows is LOADED; else
        ``LoadFailure(ORIGINAL_PAYMENT_NOT_LOADED)``: it waits, and loads by itself when it is."""
        assert posting.refunded_payment_id is not None  # every posting that follows a payment names it
        first = await self._postings.get(PostingKey(posting.key.practice_id, posting.refunded_payment_id))
        followed(posting, first)
        assert first is not None
        payment, amount, currency = first, posting.amount, posting.currency
        if posting.kind is PostingKind.DISPUTE_WON:  # a dispute loads only after its payment
            assert first.refunded_payment_id is not None
            found = await self._postings.get(PostingKey(posting.key.practice_id, first.refunded_payment_id))
            assert found is not None and found.load_status is LoadStatus.LOADED
            payment, amount, currency = found, first.amount, first.currency
        if not payment.ehr_patient_id:
            raise LoadFailure(LoadErrorCode.ORIGINAL_PAYMENT_NOT_LOADED,
                              f"Payment {payment.key.payment_id} has no patient.")
        return Against(payment, payment.ehr_patient_id, payment.patient_account_id, amount,
                       currency or payment.currency)

    async def count(self, posting: Posting, against: Against) -> Posting:
        """Count ``posting`` against its payment, just before its entry is posted: the posting with the
        amount its entry carries (a void's: what was left). ``LoadFailure(REVERSAL_EXCEEDS_PAYMENT)``
        if it would take back more than is left; nothing is counted then."""
        wanted = None if against.amount is None else counted_against(posting.kind, against.amount)
        counted = await self._balances.take(against.payment.key, posting.key.payment_id, wanted)
        if counted is None:
            taken = await self._balances.taken(against.payment.key)
            left = left_of(taken[0], [Taken(i, a) for i, a in taken[1]]) if taken else Decimal("0")
            if against.amount is None:
                detail = f"Nothing is left of payment {against.payment.key.payment_id} to void."
            else:
                detail = (f"It takes back {against.amount:.2f}; {max(left, Decimal('0')):.2f} is left of payment "
                          f"{against.payment.key.payment_id}.")
            raise LoadFailure(LoadErrorCode.REVERSAL_EXCEEDS_PAYMENT, detail)
        amount = -counted if posting.kind is PostingKind.DISPUTE_WON else counted
        return replace(posting, amount=amount, currency=against.currency)

    async def give_back(self, posting: Posting, against: Against) -> None:
        """Its entry failed: what it counted against the payment is left again."""
        await self._balances.give_back(against.payment.key, posting.key.payment_id)


def failure_account(failure: LoadFailure, account: str | None) -> str | None:
    """The patient account a failure belongs to: a refund's or reversal's waiting for its payment
    is the payment's, known before it can load."""
    if isinstance(failure, WaitsForPayment) and failure.patient_account_id:
        return failure.patient_account_id
    return account


def entry_for(posting: Posting, ehr_patient_id: str, against: Against | None) -> LedgerEntryRequest:
    """The ledger entry of a posting: a payment's (positive), a refund's or reversal's (negative,
    against its payment), a won dispute's (positive, against the disputed payment)."""
    assert posting.amount is not None and posting.currency is not None  # known by now (counted, for a void)
    payment_id = against.payment.key.payment_id if against is not None else posting.key.payment_id
    own = posting.key.payment_id
    return LedgerEntryRequest(
        practice_id=posting.key.practice_id, ehr_patient_id=ehr_patient_id, posting_id=own,
        payment_id=payment_id, refund_id=own if posting.kind is PostingKind.REFUND else None,
        amount=entry_sign(posting.kind) * posting.amount, currency=posting.currency,
        occurred_at=posting.received_at, kind=posting.kind.value,
        reversal_id=own if posting.kind in REVERSAL_KINDS or posting.kind is PostingKind.DISPUTE_WON else None,
    )
