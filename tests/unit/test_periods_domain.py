"""A month's figures and blockers (contract section 11), reversals (section 10) counted by their kind."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from paypost.domain.periods import MonthFacts, PeriodRow, Total, digest, report

AT = datetime(2026, 10, 15, 12, tzinfo=UTC)


def row(pid: str, kind: str, amount: str, status: str = "LOADED", method: str | None = "card",
        verified: bool | None = None) -> PeriodRow:
    return PeriodRow(pid, kind, method, Decimal(amount), "USD", AT, status, verified, None)


def facts(**open_tasks: Total) -> MonthFacts:
    return MonthFacts(Total(1, Decimal("100.00")), Total(), Total(1, Decimal("97.00")), Total(), open_tasks)


def test_reversals_count_by_kind_and_take_money_back() -> None:
    rows = [row("p1", "payment", "100.00"), row("p2", "payment", "50.00", method="ach"),
            row("r1", "refund", "10.00", method=None), row("v1", "return", "50.00", method="ach"),
            row("c1", "chargeback", "30.00"), row("c1.won", "dispute_won", "30.00")]
    month = report("2026-10", "UTC", rows, facts())
    assert {k: (t.count, t.amount) for k, t in month.by_kind.items()} == {
        "payment": (2, Decimal("150.00")), "refund": (1, Decimal("10.00")), "return": (1, Decimal("50.00")),
        "chargeback": (1, Decimal("30.00")), "dispute_won": (1, Decimal("30.00"))}
    assert {m: t.count for m, t in month.by_method.items()} == {"card": 1, "ach": 1}  # payments only
    assert month.by_kind_and_method["return"]["ach"].amount == Decimal("50.00")
    assert month.net_amount == Decimal("90.00")  # 150 - 10 - 50 - 30 + 30
    assert month.ready


def test_every_blocker_is_named_with_its_count_and_amount() -> None:
    rows = [row("p1", "payment", "10.00", "FAILED"), row("p2", "payment", "20.00", "HELD"),
            row("p3", "payment", "30.00", "PENDING"), row("p4", "payment", "40.00", "RETRYING"),
            row("p5", "payment", "50.00", "CLEARED", verified=False), row("p6", "payment", "60.00", "CLEARED",
                                                                            verified=True)]
    unreconciled = MonthFacts(Total(), Total(2, Decimal("5.00")), Total(), Total(1, Decimal("7.00")),
                              {"return": Total(1, Decimal("8.00")), "chargeback": Total(2, Decimal("9.00"))})
    month = report("2026-10", "UTC", rows, unreconciled)
    assert not month.ready
    assert [(b.kind, b.count, b.amount) for b in month.blockers] == [
        ("failed_postings", 1, Decimal("10.00")), ("held_postings", 1, Decimal("20.00")),
        ("waiting_postings", 2, Decimal("70.00")), ("clears_not_verified", 1, Decimal("50.00")),
        ("transfers_not_reconciled", 2, Decimal("5.00")), ("deposits_not_matched", 1, Decimal("7.00")),
        ("open_chargeback_tasks", 2, Decimal("9.00")), ("open_return_tasks", 1, Decimal("8.00"))]


def test_the_digest_changes_with_any_row_and_not_with_their_order() -> None:
    rows = [row("p1", "payment", "10.00"), row("p2", "payment", "20.00")]
    assert digest(rows) == digest(list(reversed(rows)))
    assert digest(rows) != digest([row("p1", "payment", "10.01"), row("p2", "payment", "20.00")])
    assert digest(rows) != digest([row("p1", "payment", "10.00", "CLEARED"), row("p2", "payment", "20.00")])
