"""Publishing as an upstream system does: contract messages on ``paypost.payments``."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

from paypost.domain.ports.events import Publish
from paypost.schemas.messages import INBOUND_MESSAGES, DepositReceived, PaymentPosted, PaymentRefunded, WireModel
from paypost.schemas.reading import describe_validation
from paypost.schemas.topics import (
    DEPOSIT_RECEIVED,
    DISPUTE_CLOSED,
    PATIENT_MAPPING_UPDATED,
    PAYMENT_DISPUTED,
    PAYMENT_POSTED,
    PAYMENT_REFUNDED,
    PAYMENT_RETURNED,
    PAYMENT_VOIDED,
    PAYMENTS_EXCHANGE,
    TRANSFER_SETTLED,
)

# What an upstream publishes on paypost.payments, by routing key (``paypost publish --message``).
UPSTREAM_MESSAGES: dict[str, type[WireModel]] = {key: INBOUND_MESSAGES[key] for key in (
    PAYMENT_POSTED, PAYMENT_REFUNDED, PAYMENT_VOIDED, PAYMENT_RETURNED, PAYMENT_DISPUTED, DISPUTE_CLOSED,
    TRANSFER_SETTLED, PATIENT_MAPPING_UPDATED, DEPOSIT_RECEIVED)}


class NotAMessage(ValueError):
    """A body that is not JSON, or breaks the contract (what is wrong is named, no value echoed)."""


def upstream_message(routing_key: str, text: str) -> tuple[WireModel, str]:
    """Read ``text`` as the message ``routing_key`` names, with ``event_id`` (a new one) and
    ``occurred_at`` (now) filled in when missing: the message and its event id."""
    import orjson
    from pydantic import ValidationError

    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise NotAMessage("the body is not valid JSON") from exc
    if not isinstance(data, dict):
        raise NotAMessage("the body is not a JSON object")
    event_id = str(data.setdefault("event_id", str(uuid.uuid4())))
    model = UPSTREAM_MESSAGES[routing_key]
    if "occurred_at" in model.model_fields:
        data.setdefault("occurred_at", datetime.now(UTC).isoformat())
    try:
        return model.model_validate_json(orjson.dumps(data)), event_id
    except ValidationError as exc:
        raise NotAMessage(describe_validation(exc)) from exc


async def publish_upstream(publish: Publish, routing_key: str, message: WireModel, event_id: str) -> None:
    """Publish a contract message with ``message_id`` = its event id and ``schema_version`` 1."""
    await publish(PAYMENTS_EXCHANGE, routing_key, message.model_dump_json(exclude_none=True).encode(),
                  message_id=event_id)


def new_payment(
    practice_id: str, payment_id: str, patient_account_id: str, amount: Decimal | str, *,
    ehr_patient_id: str | None = None, method: str = "card", currency: str = "USD",
    merchant_transfer_id: str | None = None, memo: str | None = None,
) -> PaymentPosted:
    return PaymentPosted.model_validate({
        "event_id": str(uuid.uuid4()), "practice_id": practice_id, "payment_id": payment_id,
        "patient_account_id": patient_account_id, "ehr_patient_id": ehr_patient_id,
        "amount": str(amount), "currency": currency, "method": method,
        "occurred_at": datetime.now(UTC).isoformat(), "merchant_transfer_id": merchant_transfer_id, "memo": memo,
    }, strict=False)


def new_refund(practice_id: str, refund_id: str, payment_id: str, amount: Decimal | str,
               currency: str = "USD") -> PaymentRefunded:
    return PaymentRefunded.model_validate({
        "event_id": str(uuid.uuid4()), "practice_id": practice_id, "refund_id": refund_id,
        "payment_id": payment_id, "amount": str(amount), "currency": currency,
        "occurred_at": datetime.now(UTC).isoformat(),
    }, strict=False)


async def publish_payment(publish: Publish, payment: PaymentPosted) -> None:
    await publish_upstream(publish, PAYMENT_POSTED, payment, payment.event_id)


async def publish_refund(publish: Publish, refund: PaymentRefunded) -> None:
    await publish_upstream(publish, PAYMENT_REFUNDED, refund, refund.event_id)


def new_deposit(practice_id: str, deposit_id: str, amount: Decimal | str, *, currency: str = "USD",
                deposited_at: str | None = None, merchant_transfer_ids: list[str] | None = None,
                bank_reference: str | None = None) -> DepositReceived:
    """A ``deposit.received`` (contract section 11), as the bank feed would publish it."""
    return DepositReceived.model_validate({
        "event_id": str(uuid.uuid4()), "practice_id": practice_id, "deposit_id": deposit_id,
        "amount": str(amount), "currency": currency, "deposited_at": deposited_at or datetime.now(UTC).isoformat(),
        "merchant_transfer_ids": merchant_transfer_ids or None, "bank_reference": bank_reference,
    }, strict=False)


async def publish_deposit(publish: Publish, deposit: DepositReceived) -> None:
    await publish_upstream(publish, DEPOSIT_RECEIVED, deposit, deposit.event_id)
