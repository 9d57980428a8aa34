"""Publishing as an upstream system does: contract messages on ``paypost.payments``."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

from paypost.domain.ports.events import Publish
from paypost.schemas.messages import PaymentPosted, PaymentRefunded, WireModel
from paypost.schemas.topics import PAYMENT_POSTED, PAYMENT_REFUNDED, PAYMENTS_EXCHANGE


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
