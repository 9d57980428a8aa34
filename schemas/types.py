"""Field types shared by the wire formats: ids, money, times."""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Annotated

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BeforeValidator,
    JsonValue,
    PlainSerializer,
    PlainValidator,
    StringConstraints,
    WithJsonSchema,
)

from paypost.domain.load_errors import LoadErrorCode
from paypost.domain.model import LoadStatus, PostingKind
from paypost.domain.money import InvalidMoney, format_money, parse_money

PRACTICE_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"

PracticeId = Annotated[str, StringConstraints(pattern=PRACTICE_ID_PATTERN)]
"""A practice id; it appears in routing keys, so its alphabet is narrow."""

Identifier = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")]
"""Any other id (payment, refund, event, patient account, transfer): 1 to 128 printable characters."""

Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
"""An ISO 4217 currency code."""

Timestamp = AwareDatetime
"""RFC 3339 with an offset."""

# RFC 3339's date-time (section 5.6): a date, "T", a time, an offset. Nothing else is read as a time
# (pydantic alone would read "0.5" as half a second after 1970, and a time without an offset).
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")


def _rfc3339(value: object) -> object:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not RFC3339.match(value):
        raise ValueError("must be an RFC 3339 date-time with an offset, such as 2026-01-31T09:00:00Z")
    return value.upper()  # pydantic reads "T" and "Z"; RFC 3339 allows "t" and "z" too


Rfc3339 = Annotated[AwareDatetime, BeforeValidator(_rfc3339)]
"""A time the HTTP API reads (a query's or a body's): an RFC 3339 date-time with its offset, nothing else."""

CURSOR = "the next_cursor of the page before, as it came; any other is a 400 invalid_cursor"
"""What a page's ``cursor`` is: opaque, so the document can only say where it comes from."""


_NOT_A_STRING = 'money must be a decimal string such as "125.00", never a number'


def _read_money(value: object) -> Decimal:
    if isinstance(value, Decimal):
        return parse_money(format(value, "f"))
    if not isinstance(value, str):
        raise ValueError(_NOT_A_STRING)  # noqa: TRY004 - pydantic names the field for a ValueError; a TypeError escapes
    try:
        return parse_money(value)
    except InvalidMoney as exc:
        raise ValueError(str(exc)) from exc


Money = Annotated[
    Decimal,
    PlainValidator(_read_money),
    PlainSerializer(format_money, return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^-?\d{1,13}(\.\d{1,2})?$", "examples": ["125.00"]}),
]
"""A decimal string with at most 2 places on the wire; a :class:`~decimal.Decimal` in Python."""


def _one_of(kind: type[enum.StrEnum]) -> Callable[[str], str]:
    names = [member.value for member in kind]

    def check(value: str) -> str:
        if value not in names:
            raise ValueError(f"must be one of {', '.join(names)}")
        return value

    return check


def _enum_schema(kind: type[enum.StrEnum]) -> dict[str, JsonValue]:
    return {"type": "string", "enum": [member.value for member in kind]}


# The names an event carries as text, checked and documented (AsyncAPI) as the domain's enums.
LoadStatusName = Annotated[str, AfterValidator(_one_of(LoadStatus)), WithJsonSchema(_enum_schema(LoadStatus))]
PostingKindName = Annotated[str, AfterValidator(_one_of(PostingKind)), WithJsonSchema(_enum_schema(PostingKind))]
LoadErrorCodeName = Annotated[str, AfterValidator(_one_of(LoadErrorCode)), WithJsonSchema(_enum_schema(LoadErrorCode))]
