"""A structlog processor: ``trace_id`` and ``span_id`` on every log line written within a trace
(contract section 13), so an operator finds a payment's lines from its trace and the other way round.

Outside a trace (or with tracing off: the API's no-op span is never valid) it adds nothing.
"""

from __future__ import annotations

from opentelemetry import trace
from structlog.typing import EventDict, WrappedLogger


def add_trace_ids(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict.setdefault("trace_id", format(context.trace_id, "032x"))
        event_dict.setdefault("span_id", format(context.span_id, "016x"))
    return event_dict
