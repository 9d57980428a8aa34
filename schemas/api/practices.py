"""``/practices``: a practice's ledger integration, its hold, and the practices in a key's scope."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal, Self
from zoneinfo import available_timezones

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    HttpUrl,
    JsonValue,
    StrictBool,
    StrictFloat,
    Tag,
    field_validator,
    model_validator,
)

from paypost.domain.integrations import CONTRACT_KINDS, LEDGER_KIND_PATTERN, SECRET_FIELDS
from paypost.schemas.api.common import Body
from paypost.schemas.api.deposits import ReconciliationIn, check_time_zone


class BuiltinLedgerConfig(Body):
    kind: Literal["builtin"]
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "USD"


class BearerAuth(Body):
    kind: Literal["bearer"]
    token: str = Field(min_length=1, max_length=4096, repr=False)  # write-only: sealed, never shown


class ClientCredentialsAuth(Body):
    kind: Literal["oauth2_client_credentials"]
    token_url: HttpUrl
    client_id: str = Field(min_length=1, max_length=512)
    client_secret: str = Field(min_length=1, max_length=4096, repr=False)  # write-only: sealed, never shown
    scope: str | None = Field(default=None, max_length=1024)


class HttpLedgerConfig(Body):
    kind: Literal["http"]
    base_url: HttpUrl
    timeout_seconds: StrictFloat = Field(default=5.0, gt=0, le=60)
    max_requests_per_second: StrictFloat | None = Field(default=None, gt=0, le=10_000)
    auth: Annotated[BearerAuth | ClientCredentialsAuth, Field(discriminator="kind")] | None = None
    tasks: StrictBool = True  # office tasks and patient flags go into the system too (contract section 7)


# An adapter's settings: plain JSON whose field names MongoDB stores as they are, of a modest size.
_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MAX_SETTINGS_BYTES = 16_384


MAX_SETTINGS_DEPTH = 8
LIMIT_64 = 2**63  # a number MongoDB stores as given: within a signed 64-bit integer's range
SETTING_SCHEMA_NAME = "AdapterSetting"
SETTING_REF: dict[str, JsonValue] = {"$ref": f"#/components/schemas/{SETTING_SCHEMA_NAME}"}
SETTING_SCHEMA: dict[str, Any] = {
    "description": f"An adapter's setting: plain JSON, names of letters, digits and _, numbers within 64 bits, "
                   f"at most {MAX_SETTINGS_DEPTH} deep and {MAX_SETTINGS_BYTES} bytes in all",
    "anyOf": [
        {"type": "null"}, {"type": "boolean"}, {"type": "string"},
        {"type": "number", "minimum": -LIMIT_64, "exclusiveMaximum": LIMIT_64},
        {"type": "array", "items": SETTING_REF},
        {"type": "object", "propertyNames": {"pattern": _SETTING_NAME.pattern}, "additionalProperties": SETTING_REF},
    ],
}
"""The document's schema of one setting (``paypost.api.document`` names it), as ``_unstorable`` checks it."""


def _unstorable(value: object, depth: int = 0) -> list[str]:
    """What in an adapter's settings MongoDB could not store as given: odd field names, integers past 64 bits."""
    if depth > MAX_SETTINGS_DEPTH:
        return [f"settings nested more than {MAX_SETTINGS_DEPTH} deep"]
    if isinstance(value, dict):
        return [problem for name, inner in value.items()
                for problem in ([] if _SETTING_NAME.match(str(name)) else [f"setting name {str(name)[:64]!r}"])
                + _unstorable(inner, depth + 1)]
    if isinstance(value, list):
        return [problem for inner in value for problem in _unstorable(inner, depth + 1)]
    if isinstance(value, int | float) and not isinstance(value, bool) and not -LIMIT_64 <= value < LIMIT_64:
        return ["a number past 64 bits"]
    return []


class AdapterLedgerConfig(BaseModel):
    """A ledger of a kind an installed adapter provides (README, "Ledger adapters for other systems").

    Here only its shape is checked; its adapter checks the settings when the practice is saved. Its
    credentials go in ``auth`` (sealed, write-only, as an ``http`` ledger's), never in another field.
    """

    # Its other fields' schema (SETTING_SCHEMA, recursive) is the OpenAPI document's AdapterSetting
    # component, which paypost.api.document adds as additionalProperties.
    model_config = ConfigDict(extra="allow", json_schema_extra={"propertyNames": {"pattern": _SETTING_NAME.pattern}})

    kind: Annotated[str, Field(pattern=LEDGER_KIND_PATTERN)]
    auth: Annotated[BearerAuth | ClientCredentialsAuth, Field(discriminator="kind")] | None = None

    @model_validator(mode="after")
    def _plain_settings(self) -> Self:
        settings = self.model_extra or {}
        if secrets := sorted(set(settings) & set(SECRET_FIELDS)):
            raise ValueError(f"{', '.join(secrets)}: credentials go in auth, which paypost keeps sealed")
        if problems := _unstorable(settings):
            raise ValueError("settings must be plain JSON with names of letters, digits and _: "
                             + ", ".join(problems[:5]))
        if len(json.dumps(settings, default=str)) > MAX_SETTINGS_BYTES:
            raise ValueError(f"settings must be at most {MAX_SETTINGS_BYTES} bytes of JSON")
        return self


def _ledger_kind(value: Any) -> str | None:
    """Which model reads a ledger: the contract's kinds their own, any other kind an adapter's."""
    kind = value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)
    if not isinstance(kind, str):
        return None
    return kind if kind in CONTRACT_KINDS else "adapter"


LedgerConfig = Annotated[
    Annotated[BuiltinLedgerConfig, Tag("builtin")]
    | Annotated[HttpLedgerConfig, Tag("http")]
    | Annotated[AdapterLedgerConfig, Tag("adapter")],
    Discriminator(_ledger_kind, custom_error_type="invalid_ledger",
                  custom_error_message="a ledger needs a kind: builtin, http, or an installed adapter's"),
]


class PracticeIn(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"name": "Clinic A", "ledger": {"kind": "builtin"}, "enabled": True},
        {"name": "Clinic B", "ledger": {"kind": "http", "base_url": "https://pms.clinic-b.example/api",
                                        "auth": {"kind": "bearer", "token": "a-secret"}}},
    ]})

    name: str = Field(min_length=1, max_length=200)
    ledger: LedgerConfig
    enabled: StrictBool = True
    # The practice's month (contract section 11): its IANA time zone, and how deposits are matched.
    time_zone: str = Field(default="UTC", max_length=64,
                           json_schema_extra={"enum": list[JsonValue](sorted(available_timezones()))})
    reconciliation: ReconciliationIn = Field(default_factory=ReconciliationIn)

    _zone = field_validator("time_zone")(check_time_zone)


class HoldIn(Body):
    reason: str = Field(min_length=1, max_length=2000)


class HoldOut(BaseModel):
    """A practice whose system is failing or held (contract section 7); absent when healthy."""

    health: Literal["failing", "held"]
    since: str | None  # when it started failing (or was held by hand)
    held_since: str | None
    reason: str | None
    held_by: str | None  # the operator of a hold by hand; null when paypost held it
    last_error: str | None
    next_try_at: str | None
    waiting: int  # its payments waiting for the system (HELD or about to be)


class PracticeOut(BaseModel):
    practice_id: str
    name: str
    ledger: dict[str, object]
    enabled: bool
    hold: HoldOut | None = None
    time_zone: str | None = None  # (section 11) shown where this paypost keeps months
    reconciliation: dict[str, object] | None = None


class PracticeSummary(BaseModel):
    practice_id: str
    name: str
    enabled: bool


class PracticeList(BaseModel):
    items: list[PracticeSummary]
