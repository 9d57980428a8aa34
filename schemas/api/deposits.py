"""``/practices/{id}/deposits``, ``/aging`` and ``/periods`` (contract section 11), and the month settings
``PUT /practices/{id}`` takes."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, Field, JsonValue, StrictBool, WithJsonSchema, field_validator

from paypost.domain.periods import DEFAULT_TIME_ZONE, PeriodError, zone
from paypost.schemas.api.common import Body
from paypost.schemas.types import Identifier

# The tolerance as the check reads it: 0 to 1000, at most two places, a number or a decimal string.
_TOLERANCE: dict[str, JsonValue] = {"anyOf": [
    {"type": "number", "minimum": 0, "maximum": 1000, "multipleOf": 0.01},
    {"type": "string", "pattern": r"^(\d{1,3}(\.\d{1,2})?|1000(\.0{1,2})?)$"},
]}


def _a_number(value: object) -> object:
    """A JSON integer (3, or 3.0 as JSON Schema counts it), never a boolean or a string."""
    if isinstance(value, bool | str):
        raise ValueError("must be a number")  # noqa: TRY004 - pydantic names the field for a ValueError
    return value


class ReconciliationIn(Body):
    """How deposits are matched by amount and date: a tolerance either way, and a window of days."""

    amount_tolerance: Annotated[Decimal, WithJsonSchema(_TOLERANCE)] = Field(
        default=Decimal("0.00"), ge=0, le=Decimal("1000.00"), decimal_places=2)
    days: Annotated[int, BeforeValidator(_a_number)] = Field(default=3, ge=0, le=31)


def check_time_zone(value: str) -> str:
    try:
        zone(value)
    except PeriodError as exc:
        raise ValueError(str(exc)) from exc
    return value


class MonthSettingsIn(Body):
    time_zone: str = Field(default=DEFAULT_TIME_ZONE, max_length=64)
    reconciliation: ReconciliationIn = Field(default_factory=ReconciliationIn)

    _zone = field_validator("time_zone")(check_time_zone)


class MatchIn(Body):
    merchant_transfer_ids: list[Identifier] = Field(min_length=1, max_length=100)
    reason: str = Field(min_length=1, max_length=2000)


class UnmatchIn(Body):
    reason: str = Field(min_length=1, max_length=2000)


class CloseIn(Body):
    note: str = Field(default="", max_length=2000)
    force: StrictBool = False
    reason: str | None = Field(default=None, max_length=2000)


class DepositOut(BaseModel):
    deposit_id: str
    amount: str
    currency: str
    deposited_at: str
    status: Literal["matched", "unmatched", "ambiguous"]
    merchant_transfer_ids: list[str]
    difference: str | None
    candidates: list[list[str]] | None = None
    named_transfer_ids: list[str]
    bank_reference: str | None
    search_cut_short: bool


class DepositList(BaseModel):
    items: list[DepositOut]


class DepositAudit(BaseModel):
    items: list[dict[str, object]]


class TotalOut(BaseModel):
    count: int
    amount: str


class AgingOut(BaseModel):
    practice_id: str
    transfers: dict[str, TotalOut]  # transfers without a deposit, by bucket (0-2, 3-5, 6-10, over-10)
    deposits: dict[str, TotalOut]  # deposits without a transfer


class BlockerOut(BaseModel):
    kind: str
    count: int
    amount: str


class PeriodOut(BaseModel):
    practice_id: str
    month: str
    time_zone: str
    by_kind: dict[str, TotalOut]
    by_method: dict[str, TotalOut]  # the payments, by method
    by_kind_and_method: dict[str, dict[str, TotalOut]]  # payments, refunds and reversals (by their payment's method)
    by_status: dict[str, TotalOut]  # LOADED, CLEARED, FAILED, HELD, WAITING
    clears: dict[str, TotalOut]  # verified, not_verified
    transfers: dict[str, TotalOut]  # reconciled, not_reconciled
    deposits: dict[str, TotalOut]  # matched, not_matched
    late_for_closed_period: TotalOut
    late_payment_ids: list[str]
    net_amount: str
    ready: bool
    blockers: list[BlockerOut]
    closed: dict[str, object] | None
