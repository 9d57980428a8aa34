from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest

from paypost.infra.runtime.settings import Settings, parse_tokens
from paypost.schemas.export import schema_texts


def test_tokens_parse_with_default_names() -> None:
    tokens = parse_tokens("a:viewer, b:operator:alice")
    assert tokens["a"].role == "viewer" and tokens["a"].name == "viewer"
    assert tokens["b"].role == "operator" and tokens["b"].name == "alice"


def test_tokens_name_their_practices() -> None:
    tokens = parse_tokens("a:admin:ann:clinic-a|clinic-b, b:viewer:bo:*, c:operator:cy")
    assert tokens["a"].role == "admin" and tokens["a"].practices == ("clinic-a", "clinic-b")
    assert tokens["b"].practices == ("*",)
    assert tokens["c"].practices == ("*",)  # as in version 1: every practice


@pytest.mark.parametrize("bad", ["a", "a:root", ":viewer", "a:viewer:x:y:z", "a:viewer:x:", "a:viewer:x:bad id"])
def test_bad_tokens_are_refused_with_a_reason(bad: str) -> None:
    with pytest.raises(ValueError, match="PAYPOST_API_TOKENS"):
        parse_tokens(bad)


def test_defaults_follow_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PAYPOST_AMQP_URL", "PAYPOST_MONGODB_URI", "PAYPOST_MONGODB_DB", "PAYPOST_HTTP",
                 "PAYPOST_API_TOKENS", "PAYPOST_ALERT_ESCALATE_AFTER"):
        monkeypatch.delenv(name, raising=False)
    s = Settings()
    assert s.amqp_url == "amqp://guest:guest@127.0.0.1:5672/"
    assert s.mongodb_uri == "mongodb://127.0.0.1:27017/"
    assert s.mongodb_db == "paypost"
    assert (s.http_host, s.http_port) == ("127.0.0.1", 8080)
    assert s.tokens == {}
    assert s.alert_escalate_after == 600


def test_committed_json_schemas_are_current() -> None:
    folder = Path(__file__).resolve().parents[2] / "schemas" / "json"
    for name, text in schema_texts().items():
        assert (folder / name).read_text() == text, f"run `paypost export-schemas` ({name} is stale)"


def test_money_is_a_string_in_every_schema() -> None:
    import json

    posted = json.loads(schema_texts()["payment.posted.json"])
    assert posted["properties"]["amount"]["type"] == "string"
    assert "amount" in posted["required"]


def test_committed_asyncapi_document_is_current() -> None:
    from paypost.infra.rabbit.asyncapi import asyncapi_text

    committed = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.json"
    assert committed.read_text() == asyncapi_text(), "run `paypost asyncapi` (docs/asyncapi.json is stale)"


def test_asyncapi_documents_every_routing_key_of_the_contract() -> None:
    import json

    from paypost.infra.rabbit.asyncapi import asyncapi_text

    channels = json.loads(asyncapi_text())["channels"]
    for key in ("payment.posted", "payment.refunded", "transfer.settled", "patient.mapping.updated",
                "posting.retry", "posting.clear", "posting.loaded.{practice_id}",
                "posting.failed.{practice_id}.{error_code}", "posting.retried.{practice_id}",
                "posting.cleared.{practice_id}", "alert.opened.{practice_id}.{kind}",
                "alert.resolved.{practice_id}.{kind}", "alert.escalated.{practice_id}.{kind}",
                "transfer.reconciled.{practice_id}",
                # contract sections 10 and 11
                "payment.voided", "payment.returned", "payment.disputed", "dispute.closed",
                "payment.reversed.{practice_id}.{kind}", "deposit.received", "deposit.matched.{practice_id}"):
        assert any(name.endswith(":" + key) for name in channels), key


def test_each_documented_binding_is_on_the_queue_as_declared() -> None:
    from paypost.infra.rabbit.asyncapi import INBOUND, bound

    for queue, _, key, _, _ in INBOUND:
        documented = bound(queue, key)
        assert documented == queue, f"{queue.name}: {documented.arguments} != {queue.arguments}"
        assert documented.routing_key == key


def test_credentials_can_come_from_secret_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "amqp").write_text("amqps://paypost:s3cret@broker.example:5671/prod\n")
    (tmp_path / "tokens").write_text("t1:operator:ops\n")
    monkeypatch.delenv("PAYPOST_AMQP_URL", raising=False)
    monkeypatch.delenv("PAYPOST_API_TOKENS", raising=False)
    monkeypatch.setenv("PAYPOST_AMQP_URL_FILE", str(tmp_path / "amqp"))
    monkeypatch.setenv("PAYPOST_API_TOKENS_FILE", str(tmp_path / "tokens"))
    s = Settings()
    assert s.amqp_url == "amqps://paypost:s3cret@broker.example:5671/prod"
    assert s.tokens["t1"].name == "ops"


def test_an_unreadable_secret_file_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYPOST_MONGODB_URI_FILE", str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="PAYPOST_MONGODB_URI_FILE"):
        Settings()


def test_amqp_over_tls_keeps_its_certificate_options() -> None:
    from faststream.rabbit.utils import build_url

    url = build_url("amqps://paypost:secret@broker.internal/prod?cafile=/etc/paypost/ca.pem"
                    "&certfile=/etc/paypost/client.pem&keyfile=/etc/paypost/client.key")
    assert url.scheme == "amqps" and url.port == 5671
    assert url.query["cafile"] == "/etc/paypost/ca.pem"
    assert url.query["certfile"] == "/etc/paypost/client.pem"
    assert url.query["keyfile"] == "/etc/paypost/client.key"


@pytest.mark.parametrize(("path", "adapter"), [("framed", "FramedPublisher"), ("basic", "BasicPublisher")])
async def test_the_publish_path_chooses_the_publisher(path: Literal["framed", "basic"], adapter: str) -> None:
    from paypost.bootstrap import Paypost

    app = Paypost(Settings(publish_path=path))  # nothing connects until started
    try:
        assert type(app.publish).__name__ == adapter
    finally:
        await app.mongo.close()


def test_a_service_given_as_a_secret_file_counts_as_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    from paypost.local.services import configured

    monkeypatch.delenv("PAYPOST_MONGODB_URI", raising=False)
    monkeypatch.delenv("PAYPOST_MONGODB_URI_FILE", raising=False)
    assert not configured("PAYPOST_MONGODB_URI")  # paypost run would start a local mongod
    monkeypatch.setenv("PAYPOST_MONGODB_URI_FILE", "/run/secrets/mongodb-uri")
    assert configured("PAYPOST_MONGODB_URI")  # it must not: the secret names the database


def test_the_asyncapi_document_carries_each_messages_constraints_from_its_model() -> None:
    """Every message's schema in the AsyncAPI document is its pydantic model's: patterns (the practice
    id, identifiers), money as a string of at most two places, the domain's enums (issue 32)."""
    import json

    from paypost.infra.rabbit.asyncapi import asyncapi_text
    from paypost.schemas.messages import AlertEvent, PaymentPosted, PostingEvent, TransferReconciledEvent

    schemas = json.loads(asyncapi_text())["components"]["schemas"]
    for model in (PaymentPosted, PostingEvent, AlertEvent, TransferReconciledEvent):
        expected = model.model_json_schema(ref_template="#/components/schemas/{model}")
        expected.pop("$defs", None)
        assert schemas[model.__name__]["properties"] == expected["properties"], model.__name__
    posting = schemas["PostingEvent"]["properties"]
    assert posting["practice_id"]["pattern"] == r"^[A-Za-z0-9_-]{1,64}$"
    assert posting["amount"]["anyOf"][0]["pattern"] == r"^-?\d{1,13}(\.\d{1,2})?$"
    assert "FAILED" in posting["load_status"]["enum"] and set(posting["kind"]["enum"]) >= {"payment", "refund"}
    assert "PATIENT_NOT_MAPPED" in schemas["LoadErrorBody"]["properties"]["code"]["enum"]
    with pytest.raises(ValueError, match="must be one of"):
        PostingEvent.model_validate_json(json.dumps({**_posting_event(), "load_status": "SOMEWHERE"}))
    PostingEvent.model_validate_json(json.dumps(_posting_event()))


def _posting_event() -> dict[str, object]:
    return {"event_id": "e-1", "occurred_at": "2026-12-06T10:00:00+00:00", "practice_id": "clinic-a",
            "event_type": "posting.loaded", "payment_id": "pay-1", "kind": "payment", "load_status": "LOADED",
            "amount": "125.00", "currency": "USD"}
