"""The rules of money that moves back (``paypost.domain.reversals``), in plain Python."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from paypost.domain.errors import LoadFailure
from paypost.domain.load_errors import LoadErrorCode
from paypost.domain.model import LoadStatus, PostingKind
from paypost.domain.posting import Posting, PostingKey
from paypost.domain.reversals import (
    NACHA_RETURN_CODES,
    Taken,
    entry_sign,
    followed,
    may_take,
    return_code_meaning,
    reversal_flag_text,
    reversal_task_text,
    won_id,
)

AT = datetime(2026, 12, 6, tzinfo=UTC)


def posting(kind: PostingKind, follows: str | None = "pay-1", status: LoadStatus = LoadStatus.PENDING,
            amount: str | None = "40.00", own: str = "rev-1") -> Posting:
    return Posting(PostingKey("p", own), kind, status, "ev", AT, amount=Decimal(amount) if amount else None,
                   currency="USD", refunded_payment_id=follows, patient_account_id="acct-1")


def test_what_each_kind_does_to_the_ledger() -> None:
    signs = {k: entry_sign(k) for k in PostingKind if k is not PostingKind.UNREADABLE}
    assert signs == {PostingKind.PAYMENT: 1, PostingKind.DISPUTE_WON: 1, PostingKind.REFUND: -1,
                     PostingKind.VOID: -1, PostingKind.RETURN: -1, PostingKind.CHARGEBACK: -1}
    assert won_id("dsp-1") == "dsp-1.won"


def test_partial_refunds_take_until_nothing_is_left() -> None:
    taken = [Taken("r1", Decimal("30.00")), Taken("r2", Decimal("30.00"))]

    assert may_take(Decimal("100.00"), taken, "r3", Decimal("40.00")) == Decimal("40.00")
    with pytest.raises(LoadFailure) as caught:
        may_take(Decimal("100.00"), taken, "r3", Decimal("40.01"))
    assert caught.value.code is LoadErrorCode.REVERSAL_EXCEEDS_PAYMENT
    assert caught.value.detail == "It takes back 40.01; 40.00 is left of the payment."


def test_a_void_takes_what_is_left_and_nothing_when_nothing_is() -> None:
    assert may_take(Decimal("100.00"), [Taken("r1", Decimal("25.50"))], "v1", None) == Decimal("74.50")
    with pytest.raises(LoadFailure, match="REVERSAL_EXCEEDS_PAYMENT"):
        may_take(Decimal("10.00"), [Taken("r1", Decimal("10.00"))], "v1", None)


def test_a_posting_counted_before_is_counted_once_and_a_won_dispute_gives_back() -> None:
    taken = [Taken("d1", Decimal("100.00"))]
    assert may_take(Decimal("100.00"), taken, "d1", Decimal("100.00")) == Decimal("100.00")
    assert may_take(Decimal("100.00"), taken, "d1.won", Decimal("-100.00")) == Decimal("-100.00")
    given_back = [*taken, Taken("d1.won", Decimal("-100.00"))]
    assert may_take(Decimal("100.00"), given_back, "r1", Decimal("100.00")) == Decimal("100.00")


def test_a_reversal_waits_for_a_loaded_payment_and_a_won_dispute_for_a_loaded_chargeback() -> None:
    refund = posting(PostingKind.RETURN)
    for found in (None, posting(PostingKind.PAYMENT, None, LoadStatus.FAILED, own="pay-1")):
        with pytest.raises(LoadFailure) as caught:
            followed(refund, found)
        assert caught.value.code is LoadErrorCode.ORIGINAL_PAYMENT_NOT_LOADED
    followed(refund, posting(PostingKind.PAYMENT, None, LoadStatus.LOADED, own="pay-1"))
    won = posting(PostingKind.DISPUTE_WON, "dsp-1", amount=None, own="dsp-1.won")
    with pytest.raises(LoadFailure, match="not a dispute"):
        followed(won, posting(PostingKind.RETURN, "pay-1", LoadStatus.LOADED, own="dsp-1"))
    followed(won, posting(PostingKind.CHARGEBACK, "pay-1", LoadStatus.LOADED, own="dsp-1"))


def test_the_common_nacha_codes_are_said_in_words() -> None:
    wanted = {f"R{n:02d}" for n in range(1, 11)} | {"R16", "R20", "R29"}
    assert set(NACHA_RETURN_CODES) == wanted
    assert return_code_meaning("r01") == "insufficient funds"
    assert "the bank's" in return_code_meaning("R99")


def test_a_returns_task_names_its_code_its_meaning_and_the_fee() -> None:
    returned = posting(PostingKind.RETURN)
    title, detail = reversal_task_text(returned, "R01", Decimal("25.00"))
    assert title == "Payment pay-1 was returned by the bank (R01)"
    assert "R01: insufficient funds" in detail and "fee of 25.00 USD." in detail and "40.00 USD" in detail
    _, without_fee = reversal_task_text(returned, "R02", None)
    assert "No returned-payment fee is set." in without_fee
    assert "voided" in reversal_task_text(posting(PostingKind.VOID), None, None)[0]
    assert "chargeback" in reversal_task_text(posting(PostingKind.CHARGEBACK), None, None)[0]
    assert "owes it again" in reversal_flag_text(returned)[1]
