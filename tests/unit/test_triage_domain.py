"""Failure groups, dry-run outlooks and canary verdicts (paypost.domain.triage), in plain Python."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from paypost.domain.load_errors import LoadErrorCode, load_error
from paypost.domain.model import LoadStatus, PostingKind
from paypost.domain.posting import PostingKey
from paypost.domain.rules import MAX_REPLAYS, PostingState
from paypost.domain.triage import (
    FailureGroup,
    canary_verdict,
    failure_group,
    largest_first,
    reason_of,
    would_clear,
    would_retry,
)

C = LoadErrorCode


@pytest.mark.parametrize(("code", "detail", "account", "refunded", "cause"), [
    (C.PATIENT_NOT_MAPPED, None, "acct-1", None, "acct-1"),
    (C.PATIENT_NOT_FOUND, None, "acct-2", None, "acct-2"),
    (C.ORIGINAL_PAYMENT_NOT_LOADED, "Payment pay-9 is PENDING.", "acct-1", "pay-9", "pay-9"),
    (C.LEDGER_REJECTED, "The ledger said: closed period", "acct-1", None, "The ledger said: closed period"),
    (C.LEDGER_REJECTED, None, "acct-1", None, None),
    (C.LEDGER_UNAVAILABLE, "after 3 attempts", "acct-1", None, None),
    (C.INVALID_MESSAGE, "not JSON", None, None, None),
])
def test_the_cause_of_each_load_error(code: LoadErrorCode, detail: str | None, account: str | None,
                                      refunded: str | None, cause: str | None) -> None:
    assert failure_group("clinic-a", load_error(code, detail), account, refunded).cause == cause


def test_a_group_id_is_stable_and_names_practice_code_and_cause() -> None:
    error = load_error(C.PATIENT_NOT_MAPPED)
    a = failure_group("clinic-a", error, "acct-1", None).group_id
    assert a == failure_group("clinic-a", error, "acct-1", None).group_id
    assert len(a) == 16 and int(a, 16) >= 0
    assert a != failure_group("clinic-b", error, "acct-1", None).group_id
    assert a != failure_group("clinic-a", error, "acct-2", None).group_id
    assert a != failure_group("clinic-a", load_error(C.PATIENT_NOT_FOUND), "acct-1", None).group_id
    # A refund's state in its detail ("PENDING", later "FAILED") does not split its group.
    first = failure_group("p", load_error(C.ORIGINAL_PAYMENT_NOT_LOADED, "Payment x is PENDING."), None, "x")
    later = failure_group("p", load_error(C.ORIGINAL_PAYMENT_NOT_LOADED, "Payment x is FAILED."), None, "x")
    assert first.group_id == later.group_id


def test_reason_of_strips_the_codes_own_words() -> None:
    assert reason_of(load_error(C.LEDGER_REJECTED, "The ledger said: no")) == "The ledger said: no"
    assert reason_of(load_error(C.LEDGER_REJECTED)) is None


def test_groups_are_largest_first_then_by_amount() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)

    def group(account: str, count: int, amount: str) -> FailureGroup:
        return FailureGroup(failure_group("p", load_error(C.PATIENT_NOT_MAPPED), account, None), count,
                            Decimal(amount), at, at)

    ordered = largest_first([group("a", 1, "5"), group("b", 3, "1"), group("c", 1, "50")])
    assert [g.key.cause for g in ordered] == ["b", "c", "a"]


def _state(status: LoadStatus, kind: PostingKind = PostingKind.PAYMENT, replays: int = 0) -> PostingState:
    return PostingState(PostingKey("p", "x"), kind, status, replays=replays)


@pytest.mark.parametrize(("state", "result"), [
    (_state(LoadStatus.FAILED), "retried"),
    (_state(LoadStatus.LOADED), "unchanged"),
    (_state(LoadStatus.RETRYING), "unchanged"),
    (_state(LoadStatus.FAILED, PostingKind.UNREADABLE), "rejected"),
    (_state(LoadStatus.FAILED, replays=MAX_REPLAYS), "rejected"),
    (None, "rejected"),
])
def test_what_a_retry_would_do(state: PostingState | None, result: str) -> None:
    assert would_retry(state, "x", "p").result == result


@pytest.mark.parametrize(("state", "result"), [
    (_state(LoadStatus.FAILED), "cleared"),
    (_state(LoadStatus.CLEARED), "unchanged"),
    (_state(LoadStatus.PENDING), "rejected"),
    (None, "rejected"),
])
def test_what_a_clear_would_do(state: PostingState | None, result: str) -> None:
    assert would_clear(state, "x", "p").result == result


L, F, R = LoadStatus.LOADED, LoadStatus.FAILED, LoadStatus.RETRYING


def test_a_canary_waits_for_every_outcome_then_decides() -> None:
    assert canary_verdict({"a": L, "b": R}, recorded=True, timed_out=False).proceed is None
    assert canary_verdict({"a": L, "b": L}, recorded=False, timed_out=False).proceed is None
    assert canary_verdict({"a": L, "b": L}, recorded=True, timed_out=False).proceed is True
    stopped = canary_verdict({"a": L, "b": F}, recorded=True, timed_out=False)
    assert stopped.proceed is False and "1 of the 2 canary payments did not load (b is FAILED)" in stopped.reason
    late = canary_verdict({"a": L, "b": R}, recorded=True, timed_out=True)
    assert late.proceed is False and "still waiting for b" in late.reason
    cleared = canary_verdict({"a": LoadStatus.CLEARED}, recorded=True, timed_out=False)
    assert cleared.proceed is False  # cleared by someone meanwhile: it did not load


def test_the_practice_an_alert_id_names() -> None:
    from paypost.domain.alerts import practice_named_by, task_id

    assert practice_named_by(task_id(PostingKey("clinic-a", "pay:1"))) == "clinic-a"
    assert practice_named_by("patient:clinic-b:acct-1:0123abcd") == "clinic-b"
    assert practice_named_by("something-else") is None and practice_named_by("task:") is None
