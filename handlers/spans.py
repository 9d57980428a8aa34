"""What a payment's span says about it (contract section 13): its practice, payment id, load status
and Load Error code, and each database write of its outcome as an event on the span.

Through OpenTelemetry's API only: with tracing off (no SDK installed, ``infra/runtime/tracing.py``)
the current span is the API's no-op one and each call here returns at once. Never patient data:
only the fields named here.
"""

from __future__ import annotations

from opentelemetry import trace

from paypost.domain.load_errors import LoadErrorCode
from paypost.domain.model import LoadStatus
from paypost.domain.posting import PostingKey


def payment(key: PostingKey) -> None:
    """Name the payment the current span handles."""
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attributes({"paypost.practice_id": key.practice_id, "paypost.payment_id": str(key.payment_id)})


def outcome(key: PostingKey, load_status: LoadStatus, error_code: LoadErrorCode | None = None) -> None:
    """The load status (and Load Error code) the current span's payment ended with."""
    span = trace.get_current_span()
    if span.is_recording():
        payment(key)
        span.set_attribute("paypost.load_status", load_status.value)
        if error_code is not None:
            span.set_attribute("paypost.load_error.code", error_code.value)


def write(operation: str, collection: str, *, written: bool = True) -> None:
    """A database write of the current span's payment, as an event (OpenTelemetry's db conventions)."""
    span = trace.get_current_span()
    if span.is_recording():
        span.add_event("db.write", {"db.system.name": "mongodb", "db.operation.name": operation,
                                    "db.collection.name": collection, "paypost.written": written})
