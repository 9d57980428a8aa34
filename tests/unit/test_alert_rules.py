"""The alerts' life cycle (``paypost.domain.alerts``), and the database filters ``infra/mongo/alerts.py``
derives from it.

As ``test_rules.py`` does for postings: each filter is evaluated on every state (and every
snooze and age that matter), so a rule the filter does not follow, or the other way round, fails here.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from paypost.domain.alerts import (
    ALERT_TRANSITIONS,
    OPEN_STATES,
    AlertState,
    alert_may_become,
    alert_sources_of,
    may_escalate,
)
from paypost.domain.load_errors import LoadErrorCode
from paypost.domain.model import LoadStatus
from paypost.domain.rules import PAYMENT_REFUNDABLE, refund_waits
from paypost.infra.mongo.alerts import becoming, escalation_due, in_states, not_snoozed, state_fields
from paypost.infra.mongo.postings import REFUNDABLE_PAYMENTS, WAITING_REFUNDS

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def matches(query: dict[str, Any], doc: dict[str, Any]) -> bool:
    """The subset of MongoDB's query language these filters use: equality, $in, $lte, $or."""
    for field, condition in query.items():
        if field == "$or":
            if not any(matches(branch, doc) for branch in condition):
                return False
            continue
        value = doc.get(field)
        if isinstance(condition, dict):
            for op, operand in condition.items():
                if op == "$in" and value not in operand:
                    return False
                if op == "$lte" and (value is None or not value <= operand):
                    return False
                if op not in ("$in", "$lte"):
                    raise AssertionError(f"operator {op} not understood by this test")
        elif value != condition:
            return False
    return True


def stored(state: AlertState, **fields: Any) -> dict[str, Any]:
    return {**state_fields(state), **fields}


def test_an_open_alert_escalates_or_resolves_an_escalated_one_resolves_and_a_resolved_one_stays() -> None:
    assert alert_may_become(AlertState.OPEN, AlertState.ESCALATED)
    assert alert_may_become(AlertState.OPEN, AlertState.RESOLVED)
    assert alert_may_become(AlertState.ESCALATED, AlertState.RESOLVED)
    assert not alert_may_become(AlertState.ESCALATED, AlertState.OPEN)
    assert not alert_may_become(AlertState.ESCALATED, AlertState.ESCALATED)  # escalated once
    assert not any(alert_may_become(AlertState.RESOLVED, t) for t in AlertState)
    assert {AlertState.OPEN, AlertState.ESCALATED} == OPEN_STATES


@pytest.mark.parametrize("target", list(AlertState))
def test_the_write_that_makes_an_alert_state_matches_exactly_the_states_allowed_to_become_it(
    target: AlertState,
) -> None:
    reachable = any(target in t for t in ALERT_TRANSITIONS.values())
    for current in AlertState:
        allowed = target in ALERT_TRANSITIONS[current]
        assert (reachable and matches(becoming(target), stored(current))) is allowed, (current, target)


@pytest.mark.parametrize("of", [frozenset(c) for n in range(1, 4) for c in itertools.combinations(AlertState, n)])
def test_a_filter_on_states_matches_exactly_those_states(of: frozenset[AlertState]) -> None:
    for current in AlertState:
        assert matches(in_states(of), stored(current)) is (current in of)


def test_the_stored_open_field_is_true_exactly_for_the_open_states() -> None:
    assert {s for s in AlertState if state_fields(s)["open"]} == OPEN_STATES
    assert alert_sources_of(AlertState.RESOLVED) == OPEN_STATES


SNOOZES = [None, NOW - timedelta(minutes=1), NOW, NOW + timedelta(minutes=1)]
OPENED = [NOW - timedelta(hours=2), NOW - timedelta(hours=1), NOW]


def test_the_escalation_sweep_finds_exactly_the_alerts_the_domain_lets_escalate() -> None:
    before = NOW - timedelta(hours=1)
    for state, opened_at, snoozed_until in itertools.product(AlertState, OPENED, SNOOZES):
        doc = stored(state, opened_at=opened_at, snoozed_until=snoozed_until)
        expected = may_escalate(state, opened_at, before, snoozed_until, NOW)
        assert matches(escalation_due(before, NOW), doc) is expected, doc


def test_a_snoozed_alert_escalates_only_once_its_snooze_is_over() -> None:
    opened = NOW - timedelta(days=1)
    assert not may_escalate(AlertState.OPEN, opened, NOW, NOW + timedelta(seconds=1), NOW)
    assert may_escalate(AlertState.OPEN, opened, NOW, NOW, NOW)  # a snooze until now is over
    assert may_escalate(AlertState.OPEN, opened, NOW, None, NOW)
    assert not may_escalate(AlertState.ESCALATED, opened, NOW, None, NOW)
    for snoozed_until in SNOOZES:
        over = snoozed_until is None or snoozed_until <= NOW
        assert matches(not_snoozed(NOW), {"snoozed_until": snoozed_until}) is over


def test_the_escalation_claim_is_the_sweep_at_the_moment_of_the_write() -> None:
    """``escalate`` re-checks the state and the snooze (a snooze that came after the sweep holds)."""
    for state, snoozed_until in itertools.product(AlertState, SNOOZES):
        claim = {**becoming(AlertState.ESCALATED), **not_snoozed(NOW)}
        doc = stored(state, snoozed_until=snoozed_until)
        assert matches(claim, doc) is may_escalate(state, NOW, NOW, snoozed_until, NOW)


def test_refunds_waiting_for_their_payment_are_found_by_the_domain_rule() -> None:
    for status, code in itertools.product(LoadStatus, [None, *LoadErrorCode]):
        doc = {"load_status": status.value, "load_error.code": code.value if code else None}
        assert matches(WAITING_REFUNDS, doc) is refund_waits(status, code), doc


def test_a_waiting_refund_goes_once_its_payment_is_in_the_status_a_refund_needs() -> None:
    for status in LoadStatus:
        assert matches(REFUNDABLE_PAYMENTS, {"load_status": status.value}) is (status is PAYMENT_REFUNDABLE)
