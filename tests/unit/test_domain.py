"""The posting domain: statuses, transitions, patient choice, money, Load Errors."""

from __future__ import annotations

from decimal import Decimal

import pytest

from paypost.domain.errors import IllegalTransition, LoadFailure
from paypost.domain.load_errors import LoadErrorCode, load_error
from paypost.domain.model import (
    ALLOWED_TRANSITIONS,
    STILL_FAILING,
    Delivery,
    LoadStatus,
    can_transition,
    check_transition,
    choose_patient,
    decide_delivery,
    sources_of,
)
from paypost.domain.money import InvalidMoney, format_money, parse_money

S = LoadStatus


@pytest.mark.parametrize(("current", "target"), [
    (S.PENDING, S.LOADED), (S.PENDING, S.FAILED), (S.RETRYING, S.LOADED), (S.RETRYING, S.FAILED),
    (S.FAILED, S.RETRYING), (S.FAILED, S.CLEARED),
])
def test_allowed_transitions(current: LoadStatus, target: LoadStatus) -> None:
    assert can_transition(current, target)
    check_transition(current, target)


@pytest.mark.parametrize(("current", "target"), [
    (S.LOADED, S.FAILED), (S.LOADED, S.CLEARED), (S.LOADED, S.RETRYING), (S.CLEARED, S.LOADED),
    (S.CLEARED, S.RETRYING), (S.PENDING, S.CLEARED), (S.RETRYING, S.CLEARED), (S.FAILED, S.LOADED),
    (S.PENDING, S.RETRYING), (S.HELD, S.CLEARED), (S.HELD, S.RETRYING), (S.FAILED, S.HELD), (S.LOADED, S.HELD),
])
def test_forbidden_transitions(current: LoadStatus, target: LoadStatus) -> None:
    assert not can_transition(current, target)
    with pytest.raises(IllegalTransition, match=f"a {current.value} posting cannot become {target.value}"):
        check_transition(current, target)


def test_loaded_and_cleared_are_final() -> None:
    assert ALLOWED_TRANSITIONS[S.LOADED] == frozenset()
    assert ALLOWED_TRANSITIONS[S.CLEARED] == frozenset()


def test_only_in_flight_postings_can_load_so_a_clear_never_races_a_load() -> None:
    assert sources_of(S.LOADED) == {S.PENDING, S.RETRYING, S.HELD}
    assert sources_of(S.CLEARED) == {S.FAILED}


def test_only_what_is_in_flight_and_not_held_yet_can_be_held() -> None:
    assert sources_of(S.HELD) == {S.PENDING, S.RETRYING}
    assert S.HELD not in STILL_FAILING  # nobody has to act on a held payment: no patient flag for it


@pytest.mark.parametrize(("status", "decision"), [
    (S.LOADED, Delivery.ALREADY_DONE), (S.CLEARED, Delivery.ALREADY_DONE), (S.FAILED, Delivery.REPLAY_NEW_BODY),
    (S.PENDING, Delivery.LOAD), (S.RETRYING, Delivery.LOAD), (S.HELD, Delivery.LOAD),
])
def test_what_a_delivery_of_a_known_payment_means(status: LoadStatus, decision: Delivery) -> None:
    assert decide_delivery(status) is decision


def test_held_mapping_wins_over_the_events_id() -> None:
    assert choose_patient("EHR-M", "EHR-E").ehr_patient_id == "EHR-M"
    assert choose_patient("EHR-M", "EHR-E").source == "mapping"
    assert choose_patient(None, "EHR-E").ehr_patient_id == "EHR-E"
    assert choose_patient(None, "EHR-E").source == "event"


def test_no_patient_id_anywhere_is_patient_not_mapped() -> None:
    with pytest.raises(LoadFailure) as caught:
        choose_patient(None, None)
    assert caught.value.code is LoadErrorCode.PATIENT_NOT_MAPPED


@pytest.mark.parametrize(("text", "value"), [("125.00", "125.00"), ("-20.50", "-20.50"), ("7", "7"), ("0.1", "0.1")])
def test_money_reads_decimal_strings(text: str, value: str) -> None:
    assert parse_money(text) == Decimal(value)


@pytest.mark.parametrize("text", ["1.234", "12,00", "1e3", "", " 1.00", "NaN", "Infinity", "--1", "1."])
def test_money_refuses_other_shapes(text: str) -> None:
    with pytest.raises(InvalidMoney):
        parse_money(text)


def test_money_is_written_with_two_places() -> None:
    assert format_money(Decimal("12.5")) == "12.50"
    assert format_money(Decimal(-3)) == "-3.00"


@pytest.mark.parametrize("code", list(LoadErrorCode))
def test_every_load_error_has_words_for_the_office(code: LoadErrorCode) -> None:
    error = load_error(code, "Extra.")
    assert error.code is code
    assert error.message.endswith("Extra.")
    assert error.fix and error.message[0].isupper()


async def test_the_pacer_keeps_its_rate_and_sleeps_once_per_slack_not_once_per_replay(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from paypost.handlers import operations

    clock = {"now": 100.0}
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock["now"] += seconds

    # The pacer's clock and sleep, as paypost.handlers.operations reaches them (its modules' attributes).
    monkeypatch.setattr("paypost.handlers.operations.time.monotonic", lambda: clock["now"])
    monkeypatch.setattr("paypost.handlers.operations.asyncio.sleep", sleep)
    pacer = operations.Pacer(rate=1000.0, slack=0.02)
    for _ in range(1000):
        await pacer.wait()
    # 1,000 replays at 1,000/s take a second (less at most the slack it may run ahead) ...
    assert 1.0 - 0.021 <= clock["now"] - 100.0 <= 1.0 + 1e-9
    # ... with one sleep per 20 ms of schedule, not one per replay
    assert 40 <= len(sleeps) <= 50
    assert all(0.02 < s <= 0.022 for s in sleeps)
