"""Configuration from the environment (contract section 4)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from schemas.types import PRACTICE_ID_PATTERN

PRACTICE_ID = re.compile(PRACTICE_ID_PATTERN)


@dataclass(frozen=True, slots=True)
class ApiToken:
    token: str
    role: str  # "viewer", "operator" or "admin"
    name: str
    practices: tuple[str, ...] = ("*",)  # the key's scope: practice ids, or "*" for every one


class Settings(BaseSettings):
    """Every setting paypost reads, each from a ``PAYPOST_`` variable."""

    model_config = SettingsConfigDict(env_prefix="PAYPOST_", extra="ignore")

    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    mongodb_uri: str = "mongodb://127.0.0.1:27017/"
    mongodb_db: str = "paypost"
    http: str = "127.0.0.1:8080"
    api_tokens: str = ""
    alert_escalate_after: float = 600.0

    # Not in the contract; documented in the README.
    prefetch: int = Field(default=200, ge=1, le=5000)
    intake_lanes: int = Field(default=4, ge=1, le=32)  # channels consuming paypost.postings
    delivery_limit: int = Field(default=20, ge=1)
    max_message_bytes: int = Field(default=256 * 1024, ge=1024)
    ledger_attempts: int = Field(default=4, ge=1)
    ledger_timeout: float = Field(default=5.0, gt=0)
    replay_rate: float = Field(default=2000.0, gt=0)  # replays per second in a bulk retry
    replay_window: int = Field(default=200, ge=1, le=5000)  # replays in flight at once
    # "process": the audit sealer runs in a process of its own, beside the payments (the default);
    # "inline": on the event loop of this process (one process fewer: tests, small installs).
    audit_sealer: Literal["process", "inline"] = "process"
    # Seconds a stop (SIGTERM, Ctrl-C) may take to finish the batches in hand, the last sweep and
    # seal; past it (a broker or database that does not answer) paypost stops at once, and what
    # it had not settled is delivered again at the next start.
    stop_timeout: float = Field(default=30.0, gt=0)
    # How events and commands are published: "framed", many publishes written in one frame write
    # (fills aiormq's pinned internals, infra/amqp_fast.py; 2.3 times the rate), or "basic", aiormq's
    # public basic_publish (the way back if an aiormq upgrade breaks the framed path).
    publish_path: Literal["framed", "basic"] = "framed"
    log_level: str = "INFO"
    log_format: str = "console"  # or "json"

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # A secret may come from a file: PAYPOST_AMQP_URL_FILE=/run/secrets/amqp-url, and so on.
        return init_settings, env_settings, SecretFiles(settings_cls), dotenv_settings, file_secret_settings

    @field_validator("api_tokens")
    @classmethod
    def _tokens_parse(cls, value: str) -> str:
        parse_tokens(value)
        return value

    @property
    def tokens(self) -> dict[str, ApiToken]:
        return parse_tokens(self.api_tokens)

    @property
    def http_host(self) -> str:
        return self.http.rpartition(":")[0] or "127.0.0.1"

    @property
    def http_port(self) -> int:
        return int(self.http.rpartition(":")[2])


SECRET_FIELDS = ("amqp_url", "mongodb_uri", "api_tokens")


class SecretFiles(PydanticBaseSettingsSource):
    """Reads ``PAYPOST_<NAME>_FILE`` for the settings that carry credentials."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        path = os.environ.get(f"PAYPOST_{field_name.upper()}_FILE")
        if field_name not in SECRET_FIELDS or not path:
            return None, field_name, False
        try:
            return Path(path).read_text().strip(), field_name, False
        except OSError as exc:
            raise ValueError(f"PAYPOST_{field_name.upper()}_FILE: cannot read {path}: {exc.strerror}") from exc

    def __call__(self) -> dict[str, Any]:
        values = {}
        for name, field in self.settings_cls.model_fields.items():
            value, key, _ = self.get_field_value(field, name)
            if value is not None:
                values[key] = value
        return values


def parse_tokens(text: str) -> dict[str, ApiToken]:
    """Read ``token:role[:name[:practices]]`` entries, comma-separated; the name defaults to the role,
    the practices (``|``-separated, or ``*``) to every practice."""
    tokens: dict[str, ApiToken] = {}
    for raw in filter(None, (part.strip() for part in text.split(","))):
        parts = raw.split(":")
        if len(parts) not in (2, 3, 4) or not parts[0]:
            raise ValueError("PAYPOST_API_TOKENS entries are token:role[:name[:practices]]")
        role = parts[1]
        if role not in ("viewer", "operator", "admin"):
            raise ValueError(f"PAYPOST_API_TOKENS role must be viewer, operator or admin, not {role!r}")
        name = parts[2] if len(parts) >= 3 and parts[2] else role
        practices = tuple(p.strip() for p in parts[3].split("|") if p.strip()) if len(parts) == 4 else ("*",)
        if not practices:
            raise ValueError(f"PAYPOST_API_TOKENS: {name} names no practices (use * for every practice)")
        bad = [p for p in practices if p != "*" and not PRACTICE_ID.fullmatch(p)]
        if bad:
            raise ValueError(f"PAYPOST_API_TOKENS: {bad[0]!r} is not a practice id")
        tokens[parts[0]] = ApiToken(token=parts[0], role=role, name=name, practices=practices)
    return tokens
