"""Matching a deposit to merchant transfers (contract section 11): the domain's search and decision."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from paypost.domain.deposits import (
    Deposit,
    DepositStatus,
    OpenTransfer,
    ReconciliationSettings,
    aging,
    candidates,
    decide,
)
from paypost.domain.periods import month_bounds, month_of

AT = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
EXACT = ReconciliationSettings(Decimal("0.00"), 3)


def transfer(tid: str, amount: str, days_before: float = 1) -> OpenTransfer:
    return OpenTransfer(tid, Decimal(amount), AT - timedelta(days=days_before))


def deposit(amount: str, named: tuple[str, ...] = ()) -> Deposit:
    return Deposit("clinic-a", "dep-1", Decimal(amount), "USD", AT, named_transfer_ids=named)


def test_a_deposit_naming_its_transfers_matches_them_whatever_the_amount() -> None:
    open_ = [transfer("MT-1", "100.00"), transfer("MT-2", "50.00")]
    decision = decide(deposit("149.00", ("MT-1", "MT-2")), open_, EXACT)
    assert decision.status is DepositStatus.MATCHED
    assert decision.merchant_transfer_ids == ("MT-1", "MT-2")


def test_a_named_transfer_not_settled_yet_leaves_the_deposit_waiting() -> None:
    decision = decide(deposit("100.00", ("MT-1", "MT-9")), [transfer("MT-1", "100.00")], EXACT)
    assert decision.status is DepositStatus.UNMATCHED


def test_one_transfer_by_amount_and_date() -> None:
    open_ = [transfer("MT-1", "100.00"), transfer("MT-2", "250.00"), transfer("MT-3", "75.10")]
    decision = decide(deposit("250.00"), open_, EXACT)
    assert (decision.status, decision.merchant_transfer_ids) == (DepositStatus.MATCHED, ("MT-2",))


def test_n_transfers_net_of_fees_sum_to_one_deposit() -> None:
    # Net amounts are after fees: 97.10 + 48.55 + 19.42 = 165.07.
    open_ = [transfer("MT-1", "97.10"), transfer("MT-2", "48.55"), transfer("MT-3", "19.42"),
             transfer("MT-4", "300.00")]
    decision = decide(deposit("165.07"), open_, EXACT)
    assert decision.status is DepositStatus.MATCHED
    assert sorted(decision.merchant_transfer_ids) == ["MT-1", "MT-2", "MT-3"]


def test_five_together_match_and_six_are_never_tried() -> None:
    open_ = [transfer(f"MT-{i}", "10.01") for i in range(1, 6)] + [transfer("MT-X", "999.00")]
    assert decide(deposit("50.05"), open_, EXACT).status is DepositStatus.MATCHED
    six = [transfer(f"MT-{i}", "10.00") for i in range(1, 7)]
    assert decide(deposit("60.00"), six, EXACT).status is DepositStatus.UNMATCHED


def test_tolerance_at_its_edge() -> None:
    settings = ReconciliationSettings(Decimal("0.05"), 3)
    open_ = [transfer("MT-1", "100.00")]
    assert decide(deposit("100.05"), open_, settings).status is DepositStatus.MATCHED
    assert decide(deposit("99.95"), open_, settings).status is DepositStatus.MATCHED
    assert decide(deposit("100.06"), open_, settings).status is DepositStatus.UNMATCHED
    assert decide(deposit("100.01"), open_, EXACT).status is DepositStatus.UNMATCHED


def test_the_window_of_days() -> None:
    assert decide(deposit("100.00"), [transfer("MT-1", "100.00", days_before=3)], EXACT).status is DepositStatus.MATCHED
    assert decide(deposit("100.00"), [transfer("MT-1", "100.00", days_before=3.5)], EXACT).status \
        is DepositStatus.UNMATCHED


def test_two_ways_to_explain_a_deposit_is_ambiguous_with_both_candidates() -> None:
    open_ = [transfer("MT-1", "100.00"), transfer("MT-2", "60.00"), transfer("MT-3", "40.00")]
    decision = decide(deposit("100.00"), open_, EXACT)
    assert decision.status is DepositStatus.AMBIGUOUS
    assert decision.merchant_transfer_ids == ()
    assert sorted(sorted(c) for c in decision.candidates) == [["MT-1"], ["MT-2", "MT-3"]]


def test_a_search_cut_short_by_its_budget_matches_nothing_by_itself() -> None:
    open_ = [transfer(f"MT-{i}", f"{10 + i}.00") for i in range(60)]
    found = candidates(Decimal("1.00"), AT, open_, EXACT, step_budget=1)
    assert found.cut_short and found.candidates == []


def test_500_open_transfers_are_searched_within_the_budget_quickly() -> None:
    rng = random.Random(28)
    open_ = [OpenTransfer(f"MT-{i}", Decimal(rng.randint(5_000, 900_000)) / 100,
                          AT - timedelta(hours=rng.randint(0, 70))) for i in range(500)]
    chosen = open_[7], open_[123], open_[404]
    amount = sum((t.net_amount for t in chosen), Decimal("0.00"))
    started = time.perf_counter()
    found = candidates(amount, AT, open_, EXACT)
    took = time.perf_counter() - started
    assert tuple(sorted(t.merchant_transfer_id for t in chosen)) in [tuple(sorted(c)) for c in found.candidates]
    assert took < 5.0


def test_aging_buckets() -> None:
    items = [(AT - timedelta(days=d), Decimal("10.00")) for d in (0, 2, 3, 5, 6, 10, 11, 40)]
    buckets = aging(items, AT)
    assert {k: (b.count, b.amount) for k, b in buckets.items()} == {
        "0-2": (2, Decimal("20.00")), "3-5": (2, Decimal("20.00")), "6-10": (2, Decimal("20.00")),
        "over-10": (2, Decimal("20.00"))}


def test_a_month_is_the_practices_month() -> None:
    start, end = month_bounds("2026-11", "America/Chicago")
    assert start == datetime(2026, 11, 1, 5, 0, tzinfo=UTC)  # CDT ends Nov 1 at 2am: midnight is 05:00 UTC
    assert end == datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
    assert month_of(datetime(2026, 12, 1, 3, 0, tzinfo=UTC), "America/Chicago") == "2026-11"
    assert month_of(datetime(2026, 12, 1, 3, 0, tzinfo=UTC), "UTC") == "2026-12"
