"""Following a payment (contract section 13): one trace from an upstream ``traceparent`` through
paypost's consumer span, its request to the practice's system (the reference ledger, whose own
server span continues the trace from the header paypost sent) and the outcome event's header; a
payment without one starts its own; log lines carry the ids; no patient data on any span; and one
real OTLP/HTTP export, decoded with opentelemetry-proto by a receiver this test starts."""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import aio_pika
import httpx
import pytest
import structlog
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from paypost.infra.runtime import tracing
from paypost.infra.runtime.logging import configure_logging
from paypost.local.reference_ledger import Faults
from paypost.schemas.topics import EVENTS_EXCHANGE
from tests.support import canaries
from tests.support.api_calls import wait_status
from tests.support.ledgers import CLOSED_PATIENT, PATIENT, ReferenceLedger, serve_reference_ledger
from tests.support.payloads import payment_body
from tests.support.upstream import Upstream
from tests.support.waits import wait_for

pytestmark = pytest.mark.integration

UPSTREAM_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
UPSTREAM_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{UPSTREAM_TRACE}-{UPSTREAM_SPAN}-01"
# What a payment names that is the patient's (contract section 12): never on a span. The suite's
# canaries (tests/support/canaries.py), whose patterns the log guard also looks for.
ACCOUNT = "acct-canary-7f3a"
MEMO = canaries.MEMO


class OtlpReceiver:
    """A small OTLP/HTTP receiver: each POST to /v1/traces decoded as an ExportTraceServiceRequest."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        received = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                received.append(request)
                self.send_response(200 if self.path == "/v1/traces" else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # http.server's name
                return

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> OtlpReceiver:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()


# One provider per process (OpenTelemetry's global): installed once, its spans kept in memory.
_EXPORTED = InMemorySpanExporter()


def _provider() -> TracerProvider:
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(_EXPORTED))
    tracing.install(provider)
    return provider


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on (before the paypost fixture builds its broker), the spans of this test only."""
    _provider()
    _EXPORTED.clear()
    yield _EXPORTED
    _EXPORTED.clear()


@pytest.fixture
async def reference_ledger() -> AsyncIterator[ReferenceLedger]:
    async with serve_reference_ledger() as server:
        yield server


@pytest.fixture
async def http_practice(spans: InMemorySpanExporter, api: httpx.AsyncClient, reference_ledger: ReferenceLedger) -> str:
    r = await api.put("/api/v1/practices/clinic-t", json={
        "name": "T", "ledger": {"kind": "http", "base_url": reference_ledger.url, "timeout_seconds": 2},
        "enabled": True})
    assert r.status_code == 200, r.text
    return "clinic-t"


@pytest.fixture
async def events(amqp_url: str, upstream: Upstream) -> AsyncIterator[aio_pika.abc.AbstractQueue]:
    """paypost's outcome events, as a dashboard hears them."""
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(EVENTS_EXCHANGE, routing_key="posting.#")
    try:
        yield queue
    finally:
        await connection.close()


async def next_event(queue: aio_pika.abc.AbstractQueue, payment_id: str) -> aio_pika.abc.AbstractIncomingMessage:
    async def found() -> aio_pika.abc.AbstractIncomingMessage | None:
        message = await queue.get(fail=False, no_ack=True)
        if message is not None and json.loads(message.body).get("payment_id") == payment_id:
            return message
        return None

    message: aio_pika.abc.AbstractIncomingMessage = await wait_for(found, timeout=20)
    return message


def of_payment(exported: InMemorySpanExporter, payment_id: str) -> ReadableSpan:
    [span] = [s for s in exported.get_finished_spans()
              if s.kind is SpanKind.CONSUMER and (s.attributes or {}).get("paypost.payment_id") == payment_id]
    return span


def children(exported: InMemorySpanExporter, parent: ReadableSpan) -> list[ReadableSpan]:
    return [s for s in exported.get_finished_spans()
            if s.parent is not None and s.parent.span_id == parent.context.span_id]


async def test_one_trace_from_the_upstream_traceparent_to_the_ledger_and_the_outcome_event(
    spans: InMemorySpanExporter, api: httpx.AsyncClient, upstream: Upstream, http_practice: str,
    reference_ledger: ReferenceLedger, events: aio_pika.abc.AbstractQueue,
) -> None:
    body = payment_body(practice_id=http_practice, patient_account_id=ACCOUNT, ehr_patient_id=PATIENT, memo=MEMO)
    await upstream.send("payment.posted", body, headers={"traceparent": TRACEPARENT})
    await wait_status(api, http_practice, body["payment_id"], "LOADED")
    event = await next_event(events, body["payment_id"])

    consumer = await wait_for(lambda: _maybe(of_payment, spans, body["payment_id"]))
    assert format(consumer.context.trace_id, "032x") == UPSTREAM_TRACE
    assert consumer.parent is not None and format(consumer.parent.span_id, "016x") == UPSTREAM_SPAN
    attributes = dict(consumer.attributes or {})
    assert attributes["messaging.system"] == "rabbitmq"
    assert attributes["messaging.destination.name"] == "paypost.postings"
    assert attributes["messaging.operation.type"] == "process"
    assert attributes["messaging.message.id"] == body["event_id"]
    assert attributes["paypost.practice_id"] == http_practice
    assert attributes["paypost.load_status"] == "LOADED"
    assert any(e.name == "db.write" for e in consumer.events)

    # paypost's request to the practice's system, a client span of the payment's...
    [client] = [s for s in children(spans, consumer) if s.kind is SpanKind.CLIENT]
    assert client.attributes is not None
    assert client.attributes["http.request.method"] == "POST"
    assert client.attributes["http.response.status_code"] in (200, 201)
    assert client.attributes["url.template"] == f"{reference_ledger.url}/entries"
    # ... whose traceparent the reference ledger received: its own server span continues it.
    [server] = [s for s in children(spans, client) if s.kind is SpanKind.SERVER]
    assert server.context.trace_id == consumer.context.trace_id

    # The outcome event carries the trace on.
    headers = event.headers or {}
    traceparent = headers["traceparent"]
    assert isinstance(traceparent, str)
    assert traceparent.split("-")[1] == UPSTREAM_TRACE
    assert traceparent.split("-")[2] == format(consumer.context.span_id, "016x")

    # No patient data on any span of the trace (section 12).
    trace_spans = [s for s in spans.get_finished_spans() if s.context.trace_id == consumer.context.trace_id]
    assert len(trace_spans) >= 3
    assert_no_patient_data(spans)


def assert_no_patient_data(exported: InMemorySpanExporter) -> None:
    """No span, attribute or event names a patient: the canaries' patterns, and this test's values."""
    for span in exported.get_finished_spans():
        said = json.dumps([span.name, dict(span.attributes or {}),
                           [(e.name, dict(e.attributes or {})) for e in span.events]], default=str)
        assert not canaries.found(said), (span.name, said)
        assert not [c for c in (ACCOUNT, PATIENT, CLOSED_PATIENT, MEMO) if c in said], (span.name, said)


async def test_a_refusal_of_the_practices_system_is_on_the_spans_as_its_code_never_its_words(
    spans: InMemorySpanExporter, api: httpx.AsyncClient, upstream: Upstream, http_practice: str,
    reference_ledger: ReferenceLedger,
) -> None:
    reference_ledger.state.faults = Faults(reject_patients=[CLOSED_PATIENT])
    body = payment_body(practice_id=http_practice, patient_account_id=ACCOUNT, ehr_patient_id=CLOSED_PATIENT)
    await upstream.send("payment.posted", body, headers={"traceparent": TRACEPARENT})
    posting = await wait_status(api, http_practice, body["payment_id"], "FAILED")
    assert posting["load_error"]["code"] == "LEDGER_REJECTED"

    consumer = await wait_for(lambda: _maybe(of_payment, spans, body["payment_id"]))
    assert (consumer.attributes or {})["paypost.load_error.code"] == "LEDGER_REJECTED"
    assert (consumer.attributes or {})["paypost.load_status"] == "FAILED"
    [client] = [s for s in children(spans, consumer) if s.kind is SpanKind.CLIENT]
    assert (client.attributes or {})["http.response.status_code"] == 422
    assert "closed" not in json.dumps(dict(client.attributes or {}))  # the system's words stay off the span
    assert_no_patient_data(spans)


async def _maybe(find: Any, *args: Any) -> Any:
    try:
        return find(*args)
    except ValueError:
        return None


async def test_a_payment_without_a_traceparent_starts_its_own_trace(
    spans: InMemorySpanExporter, api: httpx.AsyncClient, upstream: Upstream, http_practice: str,
    events: aio_pika.abc.AbstractQueue,
) -> None:
    body = await upstream.payment(practice_id=http_practice, patient_account_id=ACCOUNT, ehr_patient_id=PATIENT)
    await wait_status(api, http_practice, body["payment_id"], "LOADED")
    event = await next_event(events, body["payment_id"])

    consumer = await wait_for(lambda: _maybe(of_payment, spans, body["payment_id"]))
    assert consumer.parent is None  # a root: the trace is its own
    assert format(consumer.context.trace_id, "032x") != UPSTREAM_TRACE
    traceparent = (event.headers or {})["traceparent"]
    assert isinstance(traceparent, str)
    assert traceparent.split("-")[1] == format(consumer.context.trace_id, "032x")


async def test_log_lines_within_a_trace_carry_its_ids_and_api_calls_a_request_id(
    spans: InMemorySpanExporter, api: httpx.AsyncClient, upstream: Upstream, http_practice: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("INFO", "json")
    try:
        capsys.readouterr()
        body = payment_body(practice_id=http_practice, patient_account_id=ACCOUNT, ehr_patient_id=PATIENT)
        await upstream.send("payment.posted", body, headers={"traceparent": TRACEPARENT})
        await wait_status(api, http_practice, body["payment_id"], "LOADED")
        r = await api.get(f"/api/v1/postings/{http_practice}/{body['payment_id']}",
                          headers={"X-Request-Id": "req-from-the-caller-1"})
        assert r.headers["x-request-id"] == "req-from-the-caller-1"
        made = await api.get(f"/api/v1/practices/{http_practice}", headers={"X-Request-Id": "not plain!"})
        assert len(made.headers["x-request-id"]) == 32  # paypost made one
        await asyncio.sleep(0.1)
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    finally:
        structlog.reset_defaults()
        configure_logging()

    [loaded] = [x for x in lines if x.get("event") == "posting_loaded" and body["payment_id"] in x.get("posting", "")]
    consumer = of_payment(spans, body["payment_id"])
    assert loaded["trace_id"] == UPSTREAM_TRACE
    assert loaded["span_id"] == format(consumer.context.span_id, "016x")
    calls = [x for x in lines if x.get("event") == "api_call"]
    assert any(x.get("request_id") == "req-from-the-caller-1" for x in calls), calls
    assert any(x.get("request_id") == made.headers["x-request-id"] for x in calls), calls
    assert all(len(x.get("trace_id", "")) == 32 for x in calls)  # FastAPI's server span is a trace of its own


async def test_an_api_call_naming_a_patient_leaves_no_patient_data_on_its_server_span(
    spans: InMemorySpanExporter, api: httpx.AsyncClient,
) -> None:
    r = await api.get(f"/api/v1/practices/clinic-x/ehr-patients/{PATIENT}/ledger?account={ACCOUNT}")
    assert r.status_code in (200, 404), r.text
    [server] = [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    said = json.dumps(dict(server.attributes or {}))
    assert PATIENT not in said and ACCOUNT not in said, said
    assert server.attributes is not None
    assert server.attributes["url.path"] == "/api/v1/practices/clinic-x/ehr-patients/{id}/ledger"
    assert server.attributes["url.query"] == "account=REDACTED"


def test_a_span_goes_out_over_otlp_http_and_is_read_back() -> None:
    """One real OTLP/HTTP round trip: the exporter paypost configures, to a receiver this test runs."""
    with OtlpReceiver() as receiver:
        provider = TracerProvider()
        exporter = OTLPSpanExporter(endpoint=f"{receiver.url}/v1/traces")
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        payment_id = f"pay-{uuid.uuid4().hex[:8]}"
        with provider.get_tracer("paypost").start_as_current_span(
                "process paypost.postings", kind=SpanKind.CONSUMER,
                attributes={"messaging.system": "rabbitmq", "paypost.payment_id": payment_id}):
            pass
        provider.shutdown()
    [request] = receiver.requests
    [span] = [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert span.name == "process paypost.postings"
    assert {a.key: a.value.string_value for a in span.attributes}["paypost.payment_id"] == payment_id


def test_tracing_is_off_without_an_endpoint_and_refuses_a_protocol_it_cannot_speak() -> None:
    assert tracing.endpoint({}) is None
    assert tracing.configure_tracing("0", {}) is False
    assert tracing.endpoint({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}) == "http://collector:4318"
    assert tracing.endpoint({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}) is None
    with pytest.raises(tracing.TracingSettingError, match="http/protobuf"):
        tracing.configure_tracing("0", {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317",
                                        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
