"""Traces (contract section 13): OpenTelemetry over OTLP where the standard ``OTEL_*`` variables say.

With no endpoint set (``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT``)
nothing is configured: ``enabled()`` is false, every helper here returns at its first line, no
header is read or written, and the OpenTelemetry API's calls elsewhere (``handlers/spans.py``) meet
its no-op span.

One propagation helper for every path paypost consumes or publishes by hand (the batch intake in
``infra/rabbit/intake.py`` through ``consumer_span``, the publishers of ``infra/rabbit/broker.py``
through ``inject``, the practice's system in ``infra/ledgers/http.py`` through ``client_span``);
FastStream's own subscribers get its ``RabbitTelemetryMiddleware`` (``telemetry_middlewares``), and
the API FastAPI's own server spans (``api/app.py``).

Nothing patient-identifying goes on a span (section 12): the spans carry the practice id, payment id,
load status and Load Error code, and ``PatientDataGuard`` rewrites a server span's ``url.path`` and
``url.query`` (which name an ehr patient or a patient account on some routes) before any exporter
sees them.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

TRACER_NAME = "paypost"
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
_state = {"enabled": False}


def enabled() -> bool:
    """Whether paypost records spans (an SDK provider was installed)."""
    return _state["enabled"]


def endpoint(environ: Mapping[str, str] | None = None) -> str | None:
    """Where traces go, from the standard variables; None: tracing is off."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true" or env.get("OTEL_TRACES_EXPORTER") == "none":
        return None
    url = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or ""
    return url.strip() or None


class TracingSettingError(ValueError):
    """An ``OTEL_*`` variable paypost cannot follow (said at start, never a traceback later)."""


def configure_tracing(version: str, environ: Mapping[str, str] | None = None) -> bool:
    """Install the SDK with an OTLP/HTTP exporter if an endpoint is set; whether it was.

    ``OTEL_SERVICE_NAME`` (default ``paypost``), ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER``
    and ``OTEL_TRACES_SAMPLER_ARG`` and the exporter's own variables (headers, timeout, certificate)
    are read by the SDK as it documents them. Only ``http/protobuf`` is shipped (no gRPC stack).
    """
    env = os.environ if environ is None else environ
    if endpoint(env) is None:
        return False
    protocol = (env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                or "http/protobuf").strip()
    if protocol != "http/protobuf":
        raise TracingSettingError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: paypost exports traces over 'http/protobuf' only")
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({SERVICE_NAME: env.get("OTEL_SERVICE_NAME") or "paypost", SERVICE_VERSION: version})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    install(provider)
    return True


def install(provider: Any) -> None:
    """Make ``provider`` (an SDK ``TracerProvider``) paypost's, with the patient-data guard.

    The global provider can be set once per process: installing another one is an error (a test
    adds its processors to the one in place)."""
    from opentelemetry.sdk.trace import TracerProvider

    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider) and current is not provider:
        raise RuntimeError("a tracer provider is installed already: add span processors to it instead")
    if current is not provider:
        # Exporters see a span when it ends; the guard rewrites it as it starts.
        provider.add_span_processor(PatientDataGuard())
        trace.set_tracer_provider(provider)
    _state["enabled"] = True


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME)


# Propagation: one helper for the hand-made paths.

def extract(headers: Mapping[str, object]) -> otel_context.Context | None:
    """The context of a message's ``traceparent`` (and ``tracestate``), or None: it starts its own."""
    if not _state["enabled"] or TRACEPARENT not in headers:
        return None
    carrier = {k: _text(headers[k]) for k in (TRACEPARENT, TRACESTATE) if k in headers}
    return propagate.extract(carrier)


def inject(headers: MutableMapping[str, object]) -> None:
    """Write the current trace into ``headers`` (over any the message had: a replay carries the
    trace that replayed it on)."""
    if not _state["enabled"]:
        return
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    if TRACEPARENT in carrier:
        headers.pop(TRACESTATE, None)
        headers.update(carrier)


def _text(value: object) -> str:
    return value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)


@contextlib.contextmanager
def consumer_span(queue: str, message_id: str | None, headers: Mapping[str, object], *,
                  routing_key: str = "", body_size: int | None = None) -> Iterator[Span | None]:
    """One consumer span per message (OpenTelemetry's messaging conventions), continuing the trace
    its ``traceparent`` names; the current span while the message is handled. None when off."""
    if not _state["enabled"]:
        yield None
        return
    attributes: dict[str, str | int] = {
        "messaging.system": "rabbitmq", "messaging.destination.name": queue,
        "messaging.operation.type": "process", "messaging.operation.name": "process",
        "messaging.rabbitmq.destination.routing_key": routing_key[:200],
    }
    if message_id:
        attributes["messaging.message.id"] = message_id[:200]
    if body_size is not None:
        attributes["messaging.message.body.size"] = body_size
    with tracer().start_as_current_span(f"process {queue}", context=extract(headers), kind=SpanKind.CONSUMER,
                                        attributes=attributes, record_exception=False,
                                        set_status_on_exception=False) as span:
        try:
            yield span
        except BaseException as exc:
            _failed(span, exc)
            raise


@contextlib.contextmanager
def client_span(method: str, url: str, headers: MutableMapping[str, str], *,
                server: tuple[str, int | None] | None = None) -> Iterator[Span | None]:
    """A client span for one request to a practice's system (HTTP conventions), its ``traceparent``
    written into ``headers``. The URL is kept without its path (an entry's key or a patient's id)."""
    if not _state["enabled"]:
        yield None
        return
    attributes: dict[str, str | int] = {"http.request.method": method, "url.template": _template(url)}
    if server is not None:
        attributes["server.address"] = server[0]
        if server[1] is not None:
            attributes["server.port"] = server[1]
    with tracer().start_as_current_span(method, kind=SpanKind.CLIENT, attributes=attributes,
                                        record_exception=False, set_status_on_exception=False) as span:
        propagate.inject(headers)
        try:
            yield span
        except BaseException as exc:
            _failed(span, exc)
            raise


def answered(span: Span | None, status_code: int) -> None:
    if span is None:
        return
    span.set_attribute("http.response.status_code", status_code)
    if status_code >= 500:
        span.set_attribute("error.type", str(status_code))
        span.set_status(Status(StatusCode.ERROR))


def _failed(span: Span, exc: BaseException) -> None:
    """The exception's type only: its message may quote what a system answered."""
    span.set_attribute("error.type", type(exc).__qualname__)
    span.set_status(Status(StatusCode.ERROR))


_SEGMENT_AFTER = re.compile(
    r"/(entries/by-reference|entries|patients|flags|tasks|ehr-patients|patient-accounts)/[^/?]+")


def _template(url: str) -> str:
    """The URL with the values of its identifying segments replaced by their names."""
    return _SEGMENT_AFTER.sub(lambda m: f"/{m.group(1)}/{{id}}", url.split("?", 1)[0])


class PatientDataGuard(SpanProcessor):
    """A span processor that rewrites what a server span took from the request line: ``url.path``
    to its template form and ``url.query`` to its parameters' names (FastAPI's telemetry records
    both, and paths such as ``/practices/{id}/ehr-patients/{ehr_patient_id}`` name a patient)."""

    def on_start(self, span: Any, parent_context: otel_context.Context | None = None) -> None:
        attributes = span.attributes or {}
        path = attributes.get("url.path")
        if isinstance(path, str):
            span.set_attribute("url.path", _template(path))
        query = attributes.get("url.query")
        if isinstance(query, str):
            span.set_attribute("url.query", "&".join(p.split("=", 1)[0] + "=REDACTED" for p in query.split("&") if p))

