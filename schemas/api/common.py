"""What every resource's bodies share: a request body refuses unknown fields; an error answers
``{"error": {"code", "message"}}``, its code one of ``ErrorCode`` (listed once in the OpenAPI
document, as the ``ErrorCode`` component every error answer refers to)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# The contract's error codes (section 3), with the status each is answered with.
ERROR_CODES: dict[str, int] = {
    "invalid_cursor": 400,  # a cursor that is not a next_cursor paypost handed out
    "unknown_ledger_kind": 400,  # a ledger kind no installed adapter provides
    "invalid_ledger_settings": 400,  # an adapter refused its ledger's settings
    "refused_host": 400,  # a ledger's URL outside PAYPOST_LEDGER_ALLOWED_HOSTS
    "secret_key_missing": 400,  # credentials given, and no PAYPOST_SECRET_KEY to seal them
    "unauthorized": 401,  # no key, or one paypost does not know
    "forbidden": 403,  # the key's role may not do this
    "not_found": 404,  # nothing there, or a practice outside the key's scope
    "method_not_allowed": 405,  # Allow names the methods the path takes
    "alert_resolved": 409,  # a resolved alert escalates no more: nothing to snooze
    "invalid_request": 422,  # the request breaks a rule the document states; the message names the field
    "unknown_group": 422,  # a failure group that holds no FAILED posting now
    "selection_too_large": 422,  # a Save Changes of more than its maximum items
    "invalid_canary": 422,  # a canary with nothing to retry
    "too_many_requests": 429,  # an address that keeps sending unknown keys; Retry-After says when
    "not_implemented": 501,  # the live feed where this paypost has no event hub
    "commands_unroutable": 503,  # Save Changes could not be sent: paypost's topology is damaged
    "invalid_month": 400,  # a month that is not YYYY-MM (section 11)
    "deposit_conflict": 409,  # a deposit matched or unmatched against its state (section 11)
    "period_closed": 409,  # a closed month, or one not ready to close (section 11)
    "operation_finished": 409,  # a Save Changes stopped after it ended (or stopped already)
    "search_not_offered": 501,  # a practice's system that offers no patient search (section 14)
    "practice_system_error": 502,  # the practice's system answered a search with an error
    "practice_system_unavailable": 503,  # the practice's system did not answer a search
    "http_error": 500,  # any other HTTP error of the framework (not expected)
}
ErrorCode = Literal[
    "invalid_cursor", "unknown_ledger_kind", "invalid_ledger_settings", "refused_host", "secret_key_missing",
    "unauthorized", "forbidden", "not_found", "method_not_allowed", "alert_resolved", "invalid_request",
    "unknown_group", "selection_too_large", "invalid_canary", "too_many_requests", "not_implemented",
    "commands_unroutable", "invalid_month", "deposit_conflict", "period_closed", "operation_finished",
    "search_not_offered",
    "practice_system_error", "practice_system_unavailable", "http_error",
]


def codes_of(status: int) -> list[str]:
    """The error codes answered with ``status``."""
    return [code for code, answered in ERROR_CODES.items() if answered == status]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(BaseModel):
    code: ErrorCode = Field(description="what went wrong, for a program (the contract's error codes)")
    message: str = Field(description="what went wrong, for a person")


class ErrorOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={
        "examples": [{"error": {"code": "not_found", "message": "practice clinic-z is not set up"}}]})

    error: ErrorDetail
