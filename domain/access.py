"""Who may see and change what (contract section 6): a key's role and its scope of practices."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from paypost.domain.errors import PaypostError

EVERY_PRACTICE = "*"


class AccessDenied(PaypostError):
    """In scope, but beyond the key's role (the API answers 403)."""


class Role(StrEnum):
    """What a key may do: each role may do what the one before it may, and more."""

    VIEWER = "viewer"  # reads
    OPERATOR = "operator"  # reads and changes (Save Changes, mappings, patients, a practice's integration)
    ADMIN = "admin"  # an operator that also manages keys

    @property
    def may_change(self) -> bool:
        return self is not Role.VIEWER

    @property
    def may_manage_keys(self) -> bool:
        return self is Role.ADMIN

    def includes(self, other: Role) -> bool:
        """Whether this role may do everything ``other`` may (an admin gives keys up to its own role)."""
        order = list(Role)
        return order.index(self) >= order.index(other)


@dataclass(frozen=True, slots=True)
class Scope:
    """The practices a key sees: ``practices`` None is every practice (``*``)."""

    practices: frozenset[str] | None = None

    @classmethod
    def of(cls, names: Iterable[str]) -> Scope:
        """A scope from practice ids, where ``*`` among them is every practice."""
        chosen = frozenset(names)
        return cls(None) if EVERY_PRACTICE in chosen else cls(chosen)

    @property
    def every(self) -> bool:
        return self.practices is None

    def covers(self, practice_id: str) -> bool:
        return self.practices is None or practice_id in self.practices

    def includes(self, other: Scope) -> bool:
        """Whether every practice of ``other`` is in this scope."""
        if self.practices is None:
            return True
        return other.practices is not None and other.practices <= self.practices

    def names(self) -> list[str]:
        """As the API shows it: ``["*"]`` or the practice ids, sorted."""
        return [EVERY_PRACTICE] if self.practices is None else sorted(self.practices)


EVERY = Scope()  # every practice (``*``)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key's name (the audit trail's actor), role and scope."""

    name: str
    role: Role
    scope: Scope = EVERY
    key_id: str | None = None  # None for a key from PAYPOST_API_TOKENS

    @property
    def can_change(self) -> bool:
        return self.role.may_change


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key made through the API; its token is never kept, only the token's hash."""

    key_id: str
    name: str
    role: Role
    scope: Scope
    created_at: datetime
    created_by: str
    expires_at: datetime | None = None
    revoked_at: datetime | None = None

    def usable(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)

    def principal(self) -> Principal:
        return Principal(name=self.name, role=self.role, scope=self.scope, key_id=self.key_id)


TOKEN_PREFIX = "pp_"  # noqa: S105 - a prefix that marks paypost tokens, not a secret


def new_token() -> str:
    """A token of 256 random bits: its SHA-256 alone is enough to keep (nothing to guess)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def same_hash(a: str, b: str) -> bool:
    """Hashes compared in constant time."""
    return hmac.compare_digest(a.encode(), b.encode())
