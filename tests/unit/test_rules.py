"""The posting life cycle's rules, and the database filters derived from them.

``infra/mongo/postings.py`` writes each rule as a MongoDB filter; these tests evaluate those filters on
every combination the rule is defined for, so that a change to the rule that the filter does not
follow (or the other way round) fails here.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

import pytest

from paypost.domain.errors import LoadFailure
from paypost.domain.load_errors import LoadErrorCode
from paypost.domain.model import ALLOWED_TRANSITIONS, LoadStatus, PostingKind
from paypost.domain.posting import Posting, PostingKey
from paypost.domain.rules import (
    MAX_REPLAYS,
    PostingState,
    clear_result,
    may_retry,
    refund_account,
    refund_patient,
    retry_result,
)
from paypost.infra.mongo.postings import RETRYABLE, WAITING_REFUNDS, becoming

KEY = PostingKey("clinic-a", "pay-1")


def matches(query: dict[str, Any], doc: dict[str, Any]) -> bool:
    """The subset of MongoDB's query language these filters use: equality, $in, $lt."""
    for field, condition in query.items():
        value = doc.get(field)
        if isinstance(condition, dict):
            for op, operand in condition.items():
                if op == "$in" and value not in operand:
                    return False
                if op == "$lt" and not value < operand:
                    return False
                if op not in ("$in", "$lt"):
                    raise AssertionError(f"operator {op} not understood by this test")
        elif value != condition:
            return False
    return True


@pytest.mark.parametrize("target", list(LoadStatus))
def test_the_write_that_makes_a_status_matches_exactly_the_statuses_allowed_to_become_it(target: LoadStatus) -> None:
    condition = becoming(target) if any(target in t for t in ALLOWED_TRANSITIONS.values()) else None
    for current in LoadStatus:
        allowed = target in ALLOWED_TRANSITIONS[current]
        assert (condition is not None and matches(condition, {"load_status": current.value})) is allowed


def test_the_retry_claim_matches_exactly_what_may_be_retried() -> None:
    for kind, status, replays in itertools.product(PostingKind, LoadStatus, (0, MAX_REPLAYS - 1, MAX_REPLAYS)):
        doc = {"kind": kind.value, "load_status": status.value, "replays": replays}
        assert matches(RETRYABLE, doc) is may_retry(kind, status, replays), doc


def test_only_a_failed_payment_or_refund_under_the_replay_limit_may_be_retried() -> None:
    assert may_retry(PostingKind.PAYMENT, LoadStatus.FAILED, 0)
    assert may_retry(PostingKind.REFUND, LoadStatus.FAILED, MAX_REPLAYS - 1)
    assert not may_retry(PostingKind.PAYMENT, LoadStatus.FAILED, MAX_REPLAYS)
    assert not may_retry(PostingKind.UNREADABLE, LoadStatus.FAILED, 0)
    assert not may_retry(PostingKind.PAYMENT, LoadStatus.LOADED, 0)


def test_refunds_waiting_for_their_payment_are_the_failed_ones_with_that_load_error() -> None:
    assert matches(WAITING_REFUNDS, {"load_status": "FAILED", "load_error.code": "ORIGINAL_PAYMENT_NOT_LOADED"})
    assert not matches(WAITING_REFUNDS, {"load_status": "RETRYING", "load_error.code": "ORIGINAL_PAYMENT_NOT_LOADED"})
    assert not matches(WAITING_REFUNDS, {"load_status": "FAILED", "load_error.code": "LEDGER_REJECTED"})


def state(status: LoadStatus, **fields: Any) -> PostingState:
    return PostingState(KEY, fields.pop("kind", PostingKind.PAYMENT), status, **fields)


@pytest.mark.parametrize(("found", "result", "says"), [
    (None, "rejected", "No posting pay-1"),
    (state(LoadStatus.RETRYING, retry_token="cmd-1"), "retried", "Sent back"),
    (state(LoadStatus.LOADED, retry_token="cmd-1"), "retried", "Sent back"),  # claimed, and loaded since
    (state(LoadStatus.LOADED), "unchanged", "Already LOADED"),
    (state(LoadStatus.CLEARED), "unchanged", "Already CLEARED"),
    (state(LoadStatus.RETRYING, retry_token="cmd-0"), "unchanged", "Already being loaded (RETRYING)"),
    (state(LoadStatus.FAILED, kind=PostingKind.UNREADABLE), "rejected", "unreadable message cannot load"),
    (state(LoadStatus.FAILED, replays=MAX_REPLAYS), "rejected", f"Replayed {MAX_REPLAYS} times"),
    (state(LoadStatus.FAILED), "unchanged", "Changed by someone else"),
])
def test_what_became_of_a_retry_item(found: PostingState | None, result: str, says: str) -> None:
    item = retry_result(KEY, found, "cmd-1")
    assert (item.payment_id, item.action, item.result) == ("pay-1", "retry", result)
    assert says in item.message


@pytest.mark.parametrize(("found", "result", "says"), [
    (None, "rejected", "No posting pay-1"),
    (state(LoadStatus.CLEARED, clear_command="cmd-1"), "cleared", "Cleared."),  # this command, delivered again
    (state(LoadStatus.CLEARED, clear_command="cmd-0"), "unchanged", "Already CLEARED"),
    (state(LoadStatus.LOADED), "unchanged", "Already LOADED"),
    (state(LoadStatus.RETRYING), "rejected", "wait for that load's outcome"),
])
def test_what_became_of_a_clear_item(found: PostingState | None, result: str, says: str) -> None:
    item = clear_result(KEY, found, "cmd-1")
    assert (item.action, item.result) == ("clear", result)
    assert says in item.message


def posting(status: LoadStatus, account: str | None = "acct-1", ehr: str | None = "EHR-1",
            kind: PostingKind = PostingKind.PAYMENT) -> Posting:
    return Posting(KEY, kind, status, "e-1", datetime.now(UTC), patient_account_id=account, ehr_patient_id=ehr)


def test_a_refund_goes_to_the_patient_its_payment_was_loaded_to() -> None:
    refund = Posting(PostingKey("clinic-a", "ref-1"), PostingKind.REFUND, LoadStatus.PENDING, "e-2",
                     datetime.now(UTC), refunded_payment_id="pay-1")
    assert refund_patient(refund, posting(LoadStatus.LOADED)) == "EHR-1"
    assert refund_account(posting(LoadStatus.LOADED)) == "acct-1"


@pytest.mark.parametrize(("original", "says"), [
    (None, "Payment pay-1 is not received."),
    (posting(LoadStatus.FAILED, ehr=None), "Payment pay-1 is FAILED."),
    (posting(LoadStatus.CLEARED), "Payment pay-1 is CLEARED."),
])
def test_a_refund_waits_while_its_payment_is_not_loaded_and_still_belongs_to_its_patient(
    original: Posting | None, says: str,
) -> None:
    refund = Posting(PostingKey("clinic-a", "ref-1"), PostingKind.REFUND, LoadStatus.PENDING, "e-2",
                     datetime.now(UTC), refunded_payment_id="pay-1")
    with pytest.raises(LoadFailure) as failure:
        refund_patient(refund, original)
    assert failure.value.code is LoadErrorCode.ORIGINAL_PAYMENT_NOT_LOADED
    assert failure.value.detail == says
    assert refund_account(original) == (None if original is None else "acct-1")
