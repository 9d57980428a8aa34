"""API keys: who holds a token, and the admin's create, list and revoke (contract section 6).

Tokens from ``PAYPOST_API_TOKENS`` are held in memory as hashes; keys made through the API are kept
in the key store as hashes. Neither is ever compared as text: a token is hashed, and hashes are
compared in constant time.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

import structlog

from paypost.domain.access import AccessDenied, ApiKey, Principal, Role, Scope, new_token, same_hash, token_hash
from paypost.domain.errors import PaypostError
from paypost.domain.ports import Record
from paypost.domain.ports.access import ApiKeyStore, FailedKeyCounts
from paypost.handlers.clock import Clock, utc_now
from paypost.handlers.practices import NotFound, practice_not_found

log = structlog.get_logger("paypost.keys")


class InvalidKey(PaypostError, ValueError):
    """A key that cannot be made as asked (no practices, an expiry in the past)."""


class UnknownKey(PaypostError):
    """A token paypost does not know, or a key revoked or expired (the API answers 401)."""


class TooManyFailures(PaypostError):
    """Too many calls with unknown keys from one address (the API answers 429 with ``Retry-After``)."""

    def __init__(self, wait: int) -> None:
        super().__init__(f"Too many calls with unknown keys; try again in {wait} s.")
        self.wait = wait


def key_not_found(key_id: str) -> NotFound:
    return NotFound(f"No API key {key_id}.")


class FailedKeys:
    """Calls with an unknown, revoked or expired key per client address: past ``limit`` of them
    within ``window`` of the first, that address is refused until the window has passed.

    The count is the store's, shared by every API process; ``clock`` is the time it is read by.
    """

    def __init__(self, counts: FailedKeyCounts, clock: Clock = utc_now, limit: int = 20,
                 window: timedelta = timedelta(seconds=60)) -> None:
        self._counts = counts
        self._clock = clock
        self.limit = limit
        self.window = window

    async def failed(self, address: str) -> int | None:
        """Count one failed call; the seconds ``address`` must now wait, or None if it is not refused."""
        now = self._clock()
        count, started = await self._counts.add(address, now, self.window)
        if count <= self.limit:
            return None
        return max(1, math.ceil((started + self.window - now).total_seconds()))


class ApiKeys:
    def __init__(self, store: ApiKeyStore, configured: Mapping[str, Principal], failures: FailedKeys,
                 clock: Clock = utc_now) -> None:
        """``configured``: the principals of ``PAYPOST_API_TOKENS``, by their token's SHA-256;
        ``failures``: the count of calls with unknown keys per address."""
        self._store = store
        self._configured = list(configured.items())
        self._failures = failures
        self._clock = clock

    async def admit(self, token: str, address: str) -> Principal:
        """Who holds ``token``, calling from ``address``. A valid key is never refused; otherwise
        ``UnknownKey``, or ``TooManyFailures`` once the address has sent too many unknown keys."""
        who = await self.authenticate(token)
        if who is not None:
            return who
        wait = await self._failures.failed(address)
        if wait is not None:
            raise TooManyFailures(wait)
        raise UnknownKey("The token is not one paypost knows (or it was revoked or expired).")

    async def authenticate(self, token: str) -> Principal | None:
        """Who holds ``token``; None for a token that is unknown, revoked or expired."""
        digest = token_hash(token)
        found = None
        for known, principal in self._configured:  # every one compared: the time says nothing either
            if same_hash(known, digest):
                found = principal
        if found is not None:
            return found
        stored = await self._store.by_hash(digest)
        if stored is None or not same_hash(stored[1], digest):
            return None
        key = stored[0]
        return key.principal() if key.usable(self._clock()) else None

    async def create(self, by: Principal, name: str, role: Role, practices: Iterable[str],
                     expires_at: datetime | None) -> tuple[ApiKey, str]:
        """A new key and its token (the only time the token is seen), within ``by``'s role and scope.

        A practice outside ``by``'s scope is not found, whatever ``by``'s role: that check comes first."""
        scope = Scope.of(practices)
        if scope.practices is not None:
            for practice_id in sorted(scope.practices):
                if not by.scope.covers(practice_id):
                    raise practice_not_found(practice_id)
        _admin(by)
        if scope.practices is not None and not scope.practices:
            raise InvalidKey("a key needs at least one practice, or [\"*\"] for every practice")
        if not by.scope.includes(scope):
            raise AccessDenied(f"{by.name} sees only some practices, so it cannot make a key for every practice.")
        if not by.role.includes(role):
            raise AccessDenied(f"{by.name} has the {by.role} role and cannot make a key with the {role} role.")
        now = self._clock()
        if expires_at is not None and expires_at <= now:
            raise InvalidKey("expires_at must be in the future")
        key = ApiKey(key_id=f"key_{secrets.token_hex(8)}", name=name, role=role, scope=scope, created_at=now,
                     created_by=by.name, expires_at=expires_at)
        token = new_token()
        await self._store.add(key, token_hash(token))
        await self._store.record(now, by.name, "create", key)
        log.info("api_key_created", key_id=key.key_id, name=name, role=role.value, practices=scope.names(),
                 by=by.name)
        return key, token

    async def listed(self, by: Principal) -> list[ApiKey]:
        """The keys within ``by``'s scope, newest first (revoked ones too, marked)."""
        _admin(by)
        return [k for k in await self._store.every() if by.scope.includes(k.scope)]

    async def revoke(self, by: Principal, key_id: str) -> ApiKey:
        """Revoke a key at once (the next call with it gets 401); revoking it again changes nothing."""
        _admin(by)
        key = await self._store.get(key_id)
        if key is None or not by.scope.includes(key.scope):
            raise key_not_found(key_id)
        revoked = await self._store.revoke(key_id, self._clock())
        if revoked is None:
            return key
        await self._store.record(revoked.revoked_at or self._clock(), by.name, "revoke", revoked)
        log.info("api_key_revoked", key_id=key_id, name=key.name, by=by.name)
        return revoked

    async def trail(self, by: Principal, limit: int = 500) -> list[Record]:
        """Who created or revoked which key, newest first (within ``by``'s scope)."""
        _admin(by)
        return [r for r in await self._store.trail(limit) if by.scope.includes(Scope.of(r["practices"]))]


def _admin(by: Principal) -> None:
    if not by.role.may_manage_keys:
        raise AccessDenied(f"{by.name} has the {by.role} role; only an admin manages keys.")
