"""Reading deliveries: every way a message can be unreadable is named."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest

from paypost.domain.load_errors import LoadErrorCode
from paypost.domain.posting import KeptMessage
from paypost.schemas.messages import PaymentPosted, PaymentRefunded
from paypost.schemas.reading import Unreadable, assigned_id, read_message
from tests.support.payloads import payment_body

LIMIT = 64 * 1024


def kept(body: object, routing_key: str = "payment.posted", message_id: str | None = "m-1",
         headers: dict[str, object] | None = None) -> KeptMessage:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return KeptMessage(body=raw, routing_key=routing_key, message_id=message_id, headers=headers or {})


def test_a_good_payment_reads() -> None:
    read = read_message(kept(payment_body(amount="-20.50")), LIMIT)
    assert isinstance(read, PaymentPosted)
    assert read.amount == Decimal("-20.50")


def test_header_absent_means_version_1_and_1_reads() -> None:
    assert isinstance(read_message(kept(payment_body(), headers={"schema_version": 1}), LIMIT), PaymentPosted)


@pytest.mark.parametrize("version", [2, 0, "1", True, None])
def test_any_other_schema_version_is_unsupported(version: object) -> None:
    read = read_message(kept(payment_body(), headers={"schema_version": version}), LIMIT)
    assert isinstance(read, Unreadable)
    assert read.code is LoadErrorCode.UNSUPPORTED_SCHEMA_VERSION
    assert read.practice_id == "clinic-a"


@pytest.mark.parametrize(("change", "field"), [
    ({"amount": 125.0}, "amount"), ({"amount": "125.001"}, "amount"), ({"amount": None}, "amount"),
    ({"currency": "usd"}, "currency"), ({"occurred_at": "2026-11-25T10:00:00"}, "occurred_at"),
    ({"occurred_at": 1764064800}, "occurred_at"), ({"practice_id": "a.b"}, "practice_id"),
    ({"payment_id": ""}, "payment_id"), ({"method": "venmo"}, "method"), ({"payment_id": 42}, "payment_id"),
])
def test_contract_breaches_are_named_without_echoing_values(change: dict[str, object], field: str) -> None:
    body = {**payment_body(memo="Jane Canary DOB 1970-01-01"), **change}
    read = read_message(kept(body), LIMIT)
    assert isinstance(read, Unreadable)
    assert read.code is LoadErrorCode.INVALID_MESSAGE
    assert field in read.detail
    assert "Canary" not in read.detail and "venmo" not in read.detail


def test_refund_amount_must_be_positive() -> None:
    body = {"event_id": "e", "practice_id": "p", "refund_id": "r", "payment_id": "x", "amount": "0.00",
            "currency": "USD", "occurred_at": "2026-11-25T10:00:00Z"}
    read = read_message(kept(body, "payment.refunded"), LIMIT)
    assert isinstance(read, Unreadable) and "greater than 0" in read.detail
    assert isinstance(read_message(kept({**body, "amount": "5.00"}, "payment.refunded"), LIMIT), PaymentRefunded)


def test_oversize_is_refused_before_parsing() -> None:
    read = read_message(kept(b"x" * (LIMIT + 1)), LIMIT)
    assert isinstance(read, Unreadable) and "over the" in read.detail
    assert read.practice_id == "_unknown"


def test_unknown_routing_key() -> None:
    read = read_message(kept(payment_body(), "payment.teleported"), LIMIT)
    assert isinstance(read, Unreadable) and "payment.teleported" in read.detail


def test_a_message_without_an_id_gets_the_same_assigned_id_for_the_same_bytes() -> None:
    a = read_message(kept(b"nope", message_id=None), LIMIT)
    b = read_message(kept(b"nope", message_id=None), LIMIT)
    c = read_message(kept(b"nope!", message_id=None), LIMIT)
    assert isinstance(a, Unreadable) and isinstance(b, Unreadable) and isinstance(c, Unreadable)
    assert a.row_id == b.row_id == assigned_id(kept(b"nope", message_id=None))
    assert a.row_id.startswith("msg-") and a.row_id != c.row_id
