"""The OpenAPI document says what the API accepts and answers (issue 32): the methods of each path, the
times it reads, the content types of its answers, the patterns of the ids it checks."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, get_args

import httpx
import pytest
from pydantic import BaseModel, ValidationError

from paypost.schemas.api.changes import SELECTIONS, ChangesIn, ClearGroupIn
from paypost.schemas.api.common import ERROR_CODES, ErrorCode
from paypost.schemas.api.keys import ApiKeyIn
from paypost.schemas.api.practices import AdapterLedgerConfig
from paypost.schemas.types import PRACTICE_ID_PATTERN
from tests.support.api_calls import wait_status
from tests.support.upstream import Upstream

pytestmark = pytest.mark.integration

async def document(api: httpx.AsyncClient) -> dict[str, Any]:
    r = await api.get("/api/v1/openapi.json")
    assert r.status_code == 200
    doc: dict[str, Any] = r.json()
    return doc


async def test_a_method_a_path_does_not_take_is_a_405_whose_allow_lists_the_documented_ones(
    api: httpx.AsyncClient,
) -> None:
    """RFC 9110: a 405 names the methods the path takes; they are exactly the document's, for every path."""
    wrong = []
    for template, operations in (await document(api))["paths"].items():
        path = re.sub(r"{[^}]+}", "p1", template)
        documented = {m.upper() for m in operations}
        other = next(m for m in ("PATCH", "DELETE", "PUT", "POST") if m not in documented)
        r = await api.request(other, path)
        allow = set(r.headers.get("allow", "").split(", ")) - {""}
        if r.status_code != 405 or allow != documented or r.json()["error"]["code"] != "method_not_allowed":
            wrong.append((other, path, r.status_code, r.headers.get("allow"), sorted(documented)))
    assert wrong == []


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("DELETE", "/api/v1/practices/clinic-a", "GET, PUT"),  # two routes at one path
    ("DELETE", "/api/v1/postings/clinic-a/pay-1/notes", "GET, POST"),  # a payment id may hold a slash
    ("HEAD", "/healthz", "GET"),
    ("POST", "/console/index.html", "GET, HEAD"),  # the console's static files
])
async def test_allow_names_every_route_at_the_path(api: httpx.AsyncClient, method: str, path: str,
                                                   allow: str) -> None:
    r = await api.request(method, path)
    assert r.status_code == 405
    assert r.headers["allow"] == allow


@pytest.mark.parametrize("path", ["/api/v1/postings", "/api/v1/postings.csv", "/api/v1/postings/summary"])
async def test_a_time_that_is_not_rfc_3339_is_a_422_naming_the_parameter(api: httpx.AsyncClient, path: str) -> None:
    for value in ("0.5", "1700000000", "2026-01-01", "2026-01-01T00:00:00", "2026-01-01 00:00:00Z", "now"):
        for name in ("received_from", "received_to"):
            r = await api.get(path, params={name: value})
            assert r.status_code == 422, (name, value, r.text)
            error = r.json()["error"]
            assert error["code"] == "invalid_request"
            assert f"query.{name}:" in error["message"] and "RFC 3339" in error["message"], error
    for value in ("2026-01-01T00:00:00Z", "2026-01-01t00:00:00.25z", "2026-01-01T09:00:00+09:00"):
        r = await api.get(path, params={"received_from": value, "received_to": "2027-01-01T00:00:00Z"})
        assert r.status_code == 200, (value, r.text)


async def test_a_time_in_a_body_is_rfc_3339_too(api: httpx.AsyncClient) -> None:
    r = await api.post("/api/v1/alerts/task:clinic-a:x/snooze", json={"until": 4102444800, "reason": "a number"})
    assert r.status_code == 422
    assert "until:" in r.json()["error"]["message"]


async def test_the_feed_and_the_metrics_are_documented_with_their_own_content_types(api: httpx.AsyncClient) -> None:
    paths = (await document(api))["paths"]
    assert set(paths["/api/v1/events/stream"]["get"]["responses"]["200"]["content"]) == {"text/event-stream"}
    assert set(paths["/metrics"]["get"]["responses"]["200"]["content"]) == {"text/plain"}
    r = await api.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain;")


async def test_a_posting_path_names_a_practice_id_as_the_document_says(api: httpx.AsyncClient) -> None:
    parameters = (await document(api))["paths"]["/api/v1/postings/{practice_id}/{payment_id}"]["get"]["parameters"]
    practice = next(p for p in parameters if p["name"] == "practice_id")
    assert practice["schema"]["pattern"] == PRACTICE_ID_PATTERN
    r = await api.get("/api/v1/postings/not%20a%20practice/pay-1")
    assert r.status_code == 422
    assert "path.practice_id:" in r.json()["error"]["message"]


async def test_a_malformed_group_id_is_refused_as_the_document_says(api: httpx.AsyncClient) -> None:
    r = await api.post("/api/v1/postings/changes", json={"practice_id": "clinic-a", "retry_groups": ["G"]})
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "invalid_request" and "retry_groups.0:" in r.json()["error"]["message"]


def _refused(model: type[BaseModel], body: dict[str, Any]) -> bool:
    try:
        model.model_validate(body)
    except ValidationError:
        return True
    return False


@pytest.mark.parametrize(("model", "pointer", "body", "values"), [
    (ApiKeyIn, ("ApiKeyIn", "properties", "practices", "items", "pattern"),
     lambda v: {"name": "k", "role": "viewer", "practices": [v]},
     ["*", "clinic-a", "a" * 64, "a" * 65, "**", "clinic a", "", "clinic-a|clinic-b"]),
    (ChangesIn, ("ChangesIn", "properties", "retry_groups", "items", "pattern"),
     lambda v: {"practice_id": "clinic-a", "retry_groups": [v]},
     ["0123456789abcdef", "0123456789ABCDEF", "0123456789abcde", "0123456789abcdef0", "G", ""]),
    (ClearGroupIn, ("ClearGroupIn", "properties", "group_id", "pattern"),
     lambda v: {"group_id": v, "reason": "r"}, ["0123456789abcdef", "g123456789abcdef"]),
    (AdapterLedgerConfig, ("AdapterLedgerConfig", "propertyNames", "pattern"),
     lambda v: {"kind": "sftp", v: 1}, ["host", "_port", "Port2", "a.b", "2fa", "$where", "x" * 64, "x" * 65]),
])
async def test_the_document_and_the_check_agree(api: httpx.AsyncClient, model: type[BaseModel],
                                                pointer: tuple[str, ...], body: Any, values: list[str]) -> None:
    """Both come from one constraint: a value the document's pattern allows the model takes, and no other."""
    found: Any = (await document(api))["components"]["schemas"]
    for key in pointer:
        found = found[key]
    disagree = [v for v in values if (re.search(found, v) is None) != _refused(model, body(v))]
    assert disagree == []


async def test_a_get_at_a_postings_notes_path_is_documented_as_the_posting_whose_id_ends_so(
        api: httpx.AsyncClient, upstream: Upstream, practice: str) -> None:
    """A payment id may hold a slash: GET /postings/p/pay-1/notes is the posting "pay-1/notes", as the document says."""
    paths = (await document(api))["paths"]
    for tail in ("notes", "assignee"):
        answer = paths[f"/api/v1/postings/{{practice_id}}/{{payment_id}}/{tail}"]["get"]["responses"]["200"]
        assert answer["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/PostingDetail"}
    payment = await upstream.payment(payment_id="pay-9/notes")
    await wait_status(api, practice, payment["payment_id"], "LOADED")
    r = await api.get(f"/api/v1/postings/{practice}/pay-9/notes")
    assert r.status_code == 200 and r.json()["payment_id"] == "pay-9/notes"
    assert (await api.get(f"/api/v1/postings/{practice}/pay-9/assignee")).status_code == 404  # none has that id
    r = await api.options(f"/api/v1/postings/{practice}/pay-9/notes")
    assert r.status_code == 405 and r.headers["allow"] == "GET, POST"


async def test_every_error_code_the_api_answers_is_in_the_documents_one_list(api: httpx.AsyncClient) -> None:
    """The codes are listed once (ErrorDetail.code) and every error answer refers to it; no code in the
    API's source is missing from the list, and each answer's description names codes of the list."""
    listed = set(get_args(ErrorCode))
    assert listed == set(ERROR_CODES)
    api_source = Path(__file__).parents[2] / "api"
    used = {code for file in api_source.rglob("*.py")
            for code in re.findall(r'(?:ApiError|error_response)\(\s*\d{3},\s*"([a-z_]+)"|\(\d{3}, "([a-z_]+)"\)',
                                   file.read_text()) for code in code if code}
    assert used and used <= listed, used - listed
    doc = await document(api)
    assert doc["components"]["schemas"]["ErrorDetail"]["properties"]["code"]["enum"] == list(get_args(ErrorCode))
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            for status, answer in operation["responses"].items():
                if status.startswith(("4", "5")) and path != "/readyz":
                    schema = answer["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorOut"}, (method, path, status)
                    assert ": code " in answer["description"], (method, path, status, answer["description"])
                    named = set(answer["description"].rsplit(": code ", 1)[1].split(" or "))
                    assert named <= listed, (method, path, status, answer["description"])
                    assert answer["content"]["application/json"]["example"]["error"]["code"] in named


@pytest.mark.parametrize(("status", "where"), [
    ("409", {("post", "/api/v1/alerts/{alert_id}/snooze"), ("post", "/api/v1/alerts/{alert_id}/resolve"),
             ("post", "/api/v1/practices/{practice_id}/periods/{month}/close"),
             ("post", "/api/v1/practices/{practice_id}/deposits/{deposit_id}/match"),
             ("post", "/api/v1/practices/{practice_id}/deposits/{deposit_id}/unmatch"),
             ("post", "/api/v1/operations/{operation_id}/cancel")}),
    ("400", {("get", "/api/v1/postings"), ("get", "/api/v1/access-log"), ("put", "/api/v1/practices/{practice_id}"),
             ("get", "/api/v1/overview"), ("post", "/api/v1/practices/{practice_id}/periods/{month}/close"),
             ("get", "/api/v1/practices/{practice_id}/ehr-patients/{ehr_patient_id}/ledger")}),
    ("503", {("post", "/api/v1/postings/changes"), ("get", "/readyz"),
             ("get", "/api/v1/practices/{practice_id}/patient-search")}),
])
async def test_a_400_409_or_503_is_documented_only_where_it_happens(api: httpx.AsyncClient, status: str,
                                                                   where: set[tuple[str, str]]) -> None:
    paths = (await document(api))["paths"]
    found = {(method, path) for path, operations in paths.items() for method, operation in operations.items()
             if status in operation["responses"]}
    assert found == where


async def test_the_ledger_kinds_are_the_installed_ones(api: httpx.AsyncClient) -> None:
    """The composition root hands the app the kinds installed adapters provide: the document lists
    them, and any other kind is the 400 unknown_ledger_kind it says."""
    schemas = (await document(api))["components"]["schemas"]
    kinds = schemas["AdapterLedgerConfig"]["properties"]["kind"]["enum"]
    assert "example-sqlite" in kinds and not {"builtin", "http"} & set(kinds)
    r = await api.put("/api/v1/practices/clinic-k", json={"name": "K", "ledger": {"kind": "not-installed"}})
    assert r.status_code == 400 and r.json()["error"]["code"] == "unknown_ledger_kind"


@pytest.mark.parametrize("body", [
    {}, {"retry": []}, {"retry": [], "clear": [], "retry_groups": [], "clear_groups": []},
    {"canary": 1, "clear": [{"payment_id": "x", "reason": "r"}]}, {"retry": ["x"], "canary": 1},
    {"retry_groups": ["0123456789abcdef"], "canary": 2}, {"clear_groups": [{"group_id": "0123456789abcdef",
                                                                           "reason": "r"}]},
])
async def test_what_save_changes_must_select_is_the_documents_and_the_models(api: httpx.AsyncClient,
                                                                             body: dict[str, Any]) -> None:
    """The document's anyOf (one selection not empty) and if/then (a canary needs a retry) hold
    exactly as the model and the handler check them."""
    import jsonschema

    doc = await document(api)
    schema = {**doc["components"]["schemas"]["ChangesIn"], "components": doc["components"]}  # its $refs resolve
    full = {"practice_id": "clinic-a", **body}
    allowed = jsonschema.Draft202012Validator(schema).is_valid(full)
    r = await api.post("/api/v1/postings/changes", params={"dry_run": "true"}, json=full)
    refused_by_shape = r.status_code == 422 and r.json()["error"]["code"] in ("invalid_request", "invalid_canary")
    assert allowed != refused_by_shape, (body, r.text)
    assert SELECTIONS == ("retry", "clear", "retry_groups", "clear_groups")



async def test_the_document_is_valid_openapi_3_1(api: httpx.AsyncClient) -> None:
    """What a platform's generator reads first: the document validates against OpenAPI 3.1's own schema."""
    from openapi_spec_validator import validate
    from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

    doc = await document(api)
    assert doc["openapi"].startswith("3.1.")
    validate(doc)
    broken = {**doc, "paths": {"/x": {"get": {"responses": {"200": {"description": 1}}}}}}
    with pytest.raises(OpenAPIValidationError):  # the validator does refuse a broken one
        validate(broken)


async def test_a_body_that_is_not_utf_8_is_a_422_as_documented(api: httpx.AsyncClient, practice: str) -> None:
    r = await api.post(f"/api/v1/postings/{practice}/pay-1/notes", content=b"N\xff\xfeSD",
                       headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request", r.text
