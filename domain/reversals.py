"""Money that moves back (contract section 10): voids, returns, chargebacks and a won dispute.

A refund or a reversal is a posting of its own that follows its payment: it waits for the payment
to load, goes to the patient the payment went to, and posts an entry against it. Refunds and
reversals of one payment together never take back more than the payment's amount
(``REVERSAL_EXCEEDS_PAYMENT``); a won dispute gives its chargeback's amount back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from paypost.domain.errors import LoadFailure
from paypost.domain.load_errors import LoadErrorCode
from paypost.domain.model import LoadStatus, PostingKind
from paypost.domain.posting import Posting

# Reversals: a void, a return, a chargeback. Each is a negative entry against its payment.
REVERSAL_KINDS = frozenset({PostingKind.VOID, PostingKind.RETURN, PostingKind.CHARGEBACK})
# Every posting that follows a payment (waits for it, goes to its patient, counts against it).
FOLLOWS_A_PAYMENT = frozenset({PostingKind.REFUND, *REVERSAL_KINDS, PostingKind.DISPUTE_WON})
# Their message has no amount: a void's is what is left of its payment, a won dispute's its chargeback's.
LEARNS_ITS_AMOUNT = frozenset({PostingKind.VOID, PostingKind.DISPUTE_WON})
# A return and a chargeback mean the patient owes the amount again: an office task and a patient
# flag. A void (before the money settled) is only the office's to know: a task.
FLAGS_THE_PATIENT = frozenset({PostingKind.RETURN, PostingKind.CHARGEBACK})
OPENS_A_TASK = REVERSAL_KINDS

WON_SUFFIX = ".won"

# The common NACHA return codes, in the office's words.
NACHA_RETURN_CODES: dict[str, str] = {
    "R01": "insufficient funds",
    "R02": "account closed",
    "R03": "no account, or unable to locate the account",
    "R04": "invalid account number",
    "R05": "unauthorized debit to a consumer account",
    "R06": "returned at the originator's request",
    "R07": "authorization revoked by the customer",
    "R08": "payment stopped",
    "R09": "uncollected funds",
    "R10": "customer advises the debit was not authorized",
    "R16": "account frozen",
    "R20": "non-transaction account",
    "R29": "corporate customer advises the debit was not authorized",
}


def won_id(dispute_id: str) -> str:
    """The posting of a won dispute: one more posting, ``<dispute_id>.won``."""
    return f"{dispute_id}{WON_SUFFIX}"


def return_code_meaning(code: str) -> str:
    """What a bank's return code means, in words; a code paypost does not know is said to be the bank's."""
    return NACHA_RETURN_CODES.get(code.upper(), "a return code of the bank's (see the bank's notice)")


def entry_sign(kind: PostingKind) -> int:
    """+1: money in (a payment, a won dispute); -1: money back out (a refund, a reversal)."""
    return 1 if kind in (PostingKind.PAYMENT, PostingKind.DISPUTE_WON) else -1


def counted_against(kind: PostingKind, amount: Decimal) -> Decimal:
    """What a posting of ``kind`` takes from what is left of its payment: a refund or reversal its
    amount, a won dispute gives its amount back (negative)."""
    return -amount if kind is PostingKind.DISPUTE_WON else amount


@dataclass(frozen=True, slots=True)
class Taken:
    """One refund or reversal counted against a payment: its posting's id and the amount."""

    posting_id: str
    amount: Decimal


def left_of(payment_amount: Decimal, taken: Iterable[Taken]) -> Decimal:
    """What is left of a payment after what was taken back (a won dispute's negative amount gives back)."""
    return payment_amount - sum((t.amount for t in taken), Decimal("0"))


def may_take(payment_amount: Decimal, taken: Iterable[Taken], posting_id: str, amount: Decimal | None) -> Decimal:
    """The amount a refund or reversal ``posting_id`` takes from its payment, or
    ``LoadFailure(REVERSAL_EXCEEDS_PAYMENT)`` if it would take back more than is left.

    ``amount`` None is a void's: all that is left. The rule is stated here once; the database's
    conditional write (``infra/mongo/reversals.py``) applies the same arithmetic atomically.
    A posting counted before is counted once: its amount as counted then."""
    taken = list(taken)
    for earlier in taken:
        if earlier.posting_id == posting_id:
            return earlier.amount
    left = left_of(payment_amount, taken)
    wanted = left if amount is None else amount
    if amount is None and left <= 0:
        raise LoadFailure(LoadErrorCode.REVERSAL_EXCEEDS_PAYMENT, "Nothing is left of the payment to void.")
    if wanted > left:
        raise LoadFailure(LoadErrorCode.REVERSAL_EXCEEDS_PAYMENT,
                          f"It takes back {wanted:.2f}; {max(left, Decimal('0')):.2f} is left of the payment.")
    return wanted


class WaitsForPayment(LoadFailure):
    """``ORIGINAL_PAYMENT_NOT_LOADED``: what the posting follows is not LOADED. It waits; its failure
    belongs to the payment's patient account all the same, when the payment is known."""

    def __init__(self, detail: str, patient_account_id: str | None) -> None:
        super().__init__(LoadErrorCode.ORIGINAL_PAYMENT_NOT_LOADED, detail)
        self.patient_account_id = patient_account_id


def followed(posting: Posting, followed_posting: Posting | None) -> None:
    """Check that what a refund or reversal follows is loaded (a won dispute: its chargeback).

    Raises ``LoadFailure(ORIGINAL_PAYMENT_NOT_LOADED)`` while it is not; the posting then waits
    for it and loads by itself when it does."""
    account = followed_posting.patient_account_id if followed_posting is not None else None
    if followed_posting is None or followed_posting.load_status is not LoadStatus.LOADED:
        state = "not received" if followed_posting is None else followed_posting.load_status.value
        what = "Dispute" if posting.kind is PostingKind.DISPUTE_WON else "Payment"
        raise WaitsForPayment(f"{what} {posting.refunded_payment_id} is {state}.", account)
    if posting.kind is PostingKind.DISPUTE_WON and followed_posting.kind is not PostingKind.CHARGEBACK:
        raise WaitsForPayment(f"{posting.refunded_payment_id} is not a dispute.", account)


def reversal_task_text(posting: Posting, return_code: str | None, fee_amount: Decimal | None) -> tuple[str, str]:
    """The office task of a loaded void, return or chargeback: ids, amounts and codes only."""
    amount = f"{posting.amount:.2f} {posting.currency or ''}".strip() if posting.amount is not None else "The"
    payment = posting.refunded_payment_id
    if posting.kind is PostingKind.VOID:
        return (f"Payment {payment} was voided",
                f"{amount} of payment {payment} was voided ({posting.key.payment_id}) and taken off the "
                "patient's ledger. Check the visit is still paid for.")
    if posting.kind is PostingKind.RETURN:
        code = return_code or "?"
        detail = (f"{amount} of payment {payment} came back from the bank ({posting.key.payment_id}), return code "
                  f"{code}: {return_code_meaning(code)}. The patient owes it again.")
        detail += (f" Charge the returned-payment fee of {fee_amount:.2f} {posting.currency or ''}.".replace(" .", ".")
                   if fee_amount is not None and fee_amount > 0 else " No returned-payment fee is set.")
        return f"Payment {payment} was returned by the bank ({code})", detail
    return (f"Payment {payment} was disputed (chargeback)",
            f"{amount} of payment {payment} was taken back by a chargeback ({posting.key.payment_id}). "
            "The patient owes it again unless the dispute is won.")


def reversal_flag_text(posting: Posting) -> tuple[str, str]:
    """The patient flag of a loaded return or chargeback: the patient owes the amount again."""
    amount = f"{posting.amount:.2f} {posting.currency or ''}".strip() if posting.amount is not None else "An amount"
    what = "returned by the bank" if posting.kind is PostingKind.RETURN else "taken back by a chargeback"
    return ("A payment of this patient came back: the patient owes it again",
            f"{amount} of payment {posting.refunded_payment_id} was {what} ({posting.key.payment_id}); "
            "the patient owes it again.")
