"""Turning an AMQP delivery into a contract message, or into a named reason it cannot be read."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError

from paypost.domain.load_errors import LoadErrorCode
from paypost.domain.posting import UNKNOWN_PRACTICE, KeptMessage
from paypost.schemas.messages import INBOUND_MESSAGES, WireModel
from paypost.schemas.topics import SCHEMA_VERSION, SCHEMA_VERSION_HEADER
from paypost.schemas.types import PRACTICE_ID_PATTERN

_PRACTICE = re.compile(PRACTICE_ID_PATTERN)


@dataclass(frozen=True, slots=True)
class Unreadable:
    """Why a message could not be read, and what of it could be, for its own FAILED row."""

    code: LoadErrorCode
    detail: str
    practice_id: str
    row_id: str


def assigned_id(message: KeptMessage) -> str:
    """The row id of a message that came without a ``message_id``: the same for the same bytes."""
    digest = hashlib.sha256(message.routing_key.encode() + b"\0" + message.body).hexdigest()
    return f"msg-{digest[:32]}"


def describe_validation(error: ValidationError) -> str:
    """Name what is wrong, field by field, without echoing any value (values may be patient detail)."""
    parts = []
    for item in error.errors(include_url=False, include_input=False)[:8]:
        where = ".".join(str(p) for p in item["loc"]) or "body"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def _practice_of(data: Any) -> str:
    if isinstance(data, dict):
        practice = data.get("practice_id")
        if isinstance(practice, str) and _PRACTICE.match(practice):
            return practice
    return UNKNOWN_PRACTICE


def read_message(
    message: KeptMessage, max_bytes: int, models: Mapping[str, type[WireModel]] = INBOUND_MESSAGES
) -> WireModel | Unreadable:
    """Read ``message`` as the model its routing key names among ``models``.

    Every way it can fail is named: too large, not JSON, unknown routing key, an unsupported
    ``schema_version``, or a body that breaks the contract.
    """
    row_id = message.message_id or assigned_id(message)

    def unreadable(code: LoadErrorCode, detail: str, data: Any = None) -> Unreadable:
        return Unreadable(code=code, detail=detail, practice_id=_practice_of(data), row_id=row_id)

    if len(message.body) > max_bytes:
        return unreadable(
            LoadErrorCode.INVALID_MESSAGE,
            f"The message is {len(message.body)} bytes, over the {max_bytes}-byte limit.",
        )
    try:
        data = orjson.loads(message.body)
    except orjson.JSONDecodeError:
        return unreadable(LoadErrorCode.INVALID_MESSAGE, "The body is not valid UTF-8 JSON.")

    version = message.headers.get(SCHEMA_VERSION_HEADER, SCHEMA_VERSION)
    if isinstance(version, bool) or version != SCHEMA_VERSION:
        shown = str(version)[:40]
        return unreadable(
            LoadErrorCode.UNSUPPORTED_SCHEMA_VERSION,
            f"schema_version {shown!r} is not read by this paypost (it reads {SCHEMA_VERSION}).",
            data,
        )

    chosen = models.get(message.routing_key)
    if chosen is None:
        key = message.routing_key[:100]
        return unreadable(
            LoadErrorCode.INVALID_MESSAGE, f"The routing key {key!r} is not one paypost knows.", data
        )
    if not isinstance(data, dict):
        return unreadable(LoadErrorCode.INVALID_MESSAGE, "The body is not a JSON object.", data)
    try:
        return chosen.model_validate_json(message.body)
    except ValidationError as exc:
        return unreadable(
            LoadErrorCode.INVALID_MESSAGE, f"The body breaks the contract: {describe_validation(exc)}.", data
        )
