"""Configuration from the environment (contract section 4)."""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from paypost.domain.audit_chain import AuditKeys
from paypost.infra.ledgers.secrets import SecretBox
from paypost.schemas.types import PRACTICE_ID_PATTERN

PRACTICE_ID = re.compile(PRACTICE_ID_PATTERN)


@dataclass(frozen=True, slots=True)
class ApiToken:
    token: str
    role: str  # "viewer", "operator" or "admin"
    name: str
    practices: tuple[str, ...] = ("*",)  # the key's scope: practice ids, or "*" for every one


class Settings(BaseSettings):
    """Every setting paypost reads, each from a ``PAYPOST_`` variable."""

    model_config = SettingsConfigDict(env_prefix="PAYPOST_", extra="ignore", hide_input_in_errors=True)

    # The two URLs may carry a password: never shown in the settings' repr (a traceback's, a log's).
    # The keys and tokens below are SecretStr: read with get_secret_value(), shown as '**********'.
    amqp_url: str = Field(default="amqp://guest:guest@127.0.0.1:5672/", repr=False)
    mongodb_uri: str = Field(default="mongodb://127.0.0.1:27017/", repr=False)
    mongodb_db: str = "paypost"
    http: str = "127.0.0.1:8080"
    # HTTPS (contract section 9): both set, the API and the console are served over TLS only.
    http_tls_cert_file: Path | None = None  # the server's certificate (with its chain), PEM
    http_tls_key_file: Path | None = Field(default=None, validate_default=True)  # its private key, PEM
    api_tokens: SecretStr = SecretStr("")
    alert_escalate_after: float = 600.0

    # Not in the contract; documented in the README.
    prefetch: int = Field(default=200, ge=1, le=5000)
    # Calls with an unknown key one address may make in a minute before it is answered 429 (contract section 6).
    unknown_key_limit: int = Field(default=20, ge=1)
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
    # (fills aiormq 7.2.4's internals, infra/rabbit/amqp_fast.py; 2.3 times the rate, BENCHMARKS.md),
    # or "basic", aiormq's public basic_publish. Beside another aiormq or pamqp, "framed" turns
    # itself off at the start, with a warning, and publishes as "basic" does.
    publish_path: Literal["framed", "basic"] = "framed"
    # Host names or CIDRs a practice's system may be at although the rule refuses them (plain http,
    # loopback, private addresses): tests, the reference server, a system on the platform's own network.
    ledger_allowed_hosts: str = ""
    # Contract section 7, outages: a practice's system that has not answered for this long is held,
    # and then tried with one payment this often.
    ledger_hold_after: float = Field(default=60.0, gt=0)
    ledger_probe_every: float = Field(default=30.0, gt=0)
    # The key practice-management secrets are encrypted with (infra/ledgers/secrets.py); several,
    # comma-separated, while rotating: the first encrypts, each decrypts.
    secret_key: SecretStr = SecretStr("")
    # The key the audit trail's seals are signed with (contract section 12: HMAC-SHA-256), never
    # stored in the database; a deployment mounts it as a file (PAYPOST_AUDIT_KEY_FILE). Several,
    # comma-separated, while rotating: the first signs, each verifies.
    audit_key: SecretStr = SecretStr("")
    log_level: str = "INFO"
    log_format: str = "console"  # or "json"
    # Patient data (contract section 12). How long postings, their trails and access entries are
    # kept after their last change; how long a LOADED or CLEARED posting's message body is kept.
    retention_days: int = Field(default=2557, ge=1)
    message_retention_days: int = Field(default=30, ge=1)
    # CIDRs of the proxies whose X-Forwarded-For names the caller (the access trail's client).
    trusted_proxies: str = ""

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # A secret may come from a file: PAYPOST_AMQP_URL_FILE=/run/secrets/amqp-url, and so on.
        return init_settings, env_settings, SecretFiles(settings_cls), dotenv_settings, file_secret_settings

    @field_validator("amqp_url")
    @classmethod
    def _amqp_url_parses(cls, value: str) -> str:
        amqp_nodes(value)
        return value

    @field_validator("api_tokens")
    @classmethod
    def _tokens_parse(cls, value: SecretStr) -> SecretStr:
        parse_tokens(value.get_secret_value())
        return value

    @field_validator("secret_key")
    @classmethod
    def _secret_key_opens(cls, value: SecretStr) -> SecretStr:
        if value.get_secret_value().strip():
            SecretBox(value.get_secret_value())  # a malformed or short key is a configuration error, named at start
        return value

    @field_validator("audit_key")
    @classmethod
    def _audit_key_valid(cls, value: SecretStr) -> SecretStr:
        if value.get_secret_value().strip():
            AuditKeys(value.get_secret_value())  # a short key is a configuration error, named at start (never shown)
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_parse(cls, value: str) -> str:
        proxy_networks(value)
        return value

    @property
    def audit_key_text(self) -> str:
        return _plain(self.audit_key).strip()

    @property
    def audit_keys(self) -> AuditKeys | None:
        return AuditKeys(self.audit_key_text) if self.audit_key_text else None

    @property
    def proxies(self) -> list[IPNetwork]:
        return proxy_networks(self.trusted_proxies)

    @field_validator("http_tls_cert_file", "http_tls_key_file", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("http_tls_key_file")
    @classmethod
    def _tls_files_go_together(cls, key: Path | None, info: ValidationInfo) -> Path | None:
        # A field's validator, not the model's: a model's error would show every input, credentials included.
        if (info.data.get("http_tls_cert_file") is None) != (key is None):
            missing = "PAYPOST_HTTP_TLS_KEY_FILE" if key is None else "PAYPOST_HTTP_TLS_CERT_FILE"
            raise ValueError(f"PAYPOST_HTTP_TLS_CERT_FILE and PAYPOST_HTTP_TLS_KEY_FILE go together: {missing} "
                             "is not set")
        return key

    @property
    def http_tls(self) -> bool:
        """Whether the API and the console are served over HTTPS (and only HTTPS)."""
        return self.http_tls_cert_file is not None

    @property
    def tokens(self) -> dict[str, ApiToken]:
        return parse_tokens(_plain(self.api_tokens))

    @property
    def secret_keys(self) -> str:
        """``PAYPOST_SECRET_KEY`` as configured (comma-separated keys), or "" when unset."""
        return _plain(self.secret_key).strip()

    @property
    def http_host(self) -> str:
        return self.http.rpartition(":")[0] or "127.0.0.1"

    @property
    def http_port(self) -> int:
        return int(self.http.rpartition(":")[2])


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def proxy_networks(text: str) -> list[IPNetwork]:
    """``PAYPOST_TRUSTED_PROXIES``: addresses or CIDRs, comma-separated."""
    networks = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError as exc:
            raise ValueError(f"PAYPOST_TRUSTED_PROXIES: {part!r} is not an address or a CIDR") from exc
    return networks


def _plain(value: object) -> str:
    """A secret setting's text. ``model_copy(update=...)`` does not validate, so a str set that way
    is read as it is."""
    return value.get_secret_value() if isinstance(value, SecretStr) else str(value)


SECRET_FIELDS = ("amqp_url", "mongodb_uri", "api_tokens", "secret_key", "audit_key")


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


# A comma followed by a URL's scheme starts the next broker; any other comma (one in a password,
# say) belongs to the URL it is in.
_NEXT_NODE = re.compile(r",\s*(?=amqps?://)", re.IGNORECASE)


def amqp_nodes(text: str) -> list[str]:
    """The brokers ``PAYPOST_AMQP_URL`` lists: full ``amqp://`` or ``amqps://`` URLs, comma-separated.

    They are the nodes of one cluster, so they differ only in host and port: the same scheme, user,
    password, virtual host and options (a ``?cafile=`` for TLS, say). Errors never show a password.
    """
    nodes = [part.strip() for part in _NEXT_NODE.split(text.strip())]
    cluster: tuple[object, ...] | None = None
    seen: set[tuple[str, int]] = set()
    for node in nodes:
        parts = urlsplit(node)
        shown = node.replace(f":{parts.password}@", ":***@") if parts.password else node
        if parts.scheme.lower() not in ("amqp", "amqps") or not parts.hostname:
            raise ValueError(f"PAYPOST_AMQP_URL: {shown!r} is not an amqp:// or amqps:// URL with a host; "
                             "several brokers are full URLs, comma-separated")
        if "," in parts.netloc.rpartition("@")[2] or "," in parts.path:
            raise ValueError(f"PAYPOST_AMQP_URL: {shown!r}: each broker of a list is a full URL "
                             "(amqp://user:pass@host:port/vhost), comma-separated")
        try:
            port = parts.port or (5671 if parts.scheme.lower() == "amqps" else 5672)
        except ValueError as exc:
            raise ValueError(f"PAYPOST_AMQP_URL: {shown!r} has a port that is not a number") from exc
        same = (parts.scheme.lower(), parts.username, parts.password, parts.path.strip("/"), parts.query)
        if cluster is not None and same != cluster:
            raise ValueError("PAYPOST_AMQP_URL lists the brokers of one cluster: every URL has the same scheme, "
                             f"user, password, virtual host and options, only host and port differ ({shown!r})")
        cluster = same
        if (parts.hostname.lower(), port) in seen:
            raise ValueError(f"PAYPOST_AMQP_URL names {parts.hostname}:{port} twice")
        seen.add((parts.hostname.lower(), port))
    return nodes


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
