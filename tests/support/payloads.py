"""Bodies of the messages an upstream system publishes (contract section 3)."""

from __future__ import annotations

import uuid
from typing import Any

from tests.support import canaries


def payment_body(**fields: Any) -> dict[str, Any]:
    """A ``payment.posted`` body for clinic-a and patient EHR-1; ``fields`` override, None removes.

    Its patient account, patient id and memo are canaries (``tests.support.canaries``): the suite's
    log guard fails a test whose log lines show them."""
    body = {"event_id": str(uuid.uuid4()), "practice_id": "clinic-a", "payment_id": f"pay-{uuid.uuid4().hex[:8]}",
            "patient_account_id": canaries.ACCOUNT, "ehr_patient_id": canaries.PATIENT, "amount": "125.00",
            "currency": "USD", "method": "card", "occurred_at": "2026-11-25T10:00:00+00:00", "memo": canaries.MEMO,
            **fields}
    return {k: v for k, v in body.items() if v is not None}


def refund_body(**fields: Any) -> dict[str, Any]:
    """A ``payment.refunded`` body of 10.00 against pay-1 of clinic-a; ``fields`` override."""
    return {"event_id": str(uuid.uuid4()), "practice_id": "clinic-a", "refund_id": f"ref-{uuid.uuid4().hex[:8]}",
            "payment_id": "pay-1", "amount": "10.00", "currency": "USD",
            "occurred_at": "2026-11-25T10:00:00+00:00", **fields}
