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
from paypost.domain.ports.access import ApiKeyStore, FailedKeyCounts, FeedTickets
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


class NoTickets(PaypostError):
    """Live-feed tickets asked of a paypost built without a place to keep them (the API answers 501)."""


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


# How long a live-feed ticket may wait to be used (contract section 12: within 60 seconds).
TICKET_LIFETIME = timedelta(seconds=30)


class ApiKeys:
    def __init__(self, store: ApiKeyStore, configured: Mapping[str, Principal], failures: FailedKeys,
                 clock: Clock = utc_now, tickets: FeedTickets | None = None) -> None:
        """``configured``: the principals of ``PAYPOST_API_TOKENS``, by their token's SHA-256;
        ``failures``: the count of calls with unknown keys per address; ``tickets``: where the live
        feed's tickets are kept (None: no tickets are issued, the feed takes the key in a header)."""
        self._store = store
        self._configured = list(configured.items())
        self._failures = failures
        self._clock = clock
        self._tickets = tickets

    async def admit(self, token: str, address: str) -> Principal:
        """Who holds ``token``, calling from ``address``. A valid key is never refused; otherwise
        ``UnknownKey``, or ``TooManyFailures`` once the address has sent too many unknown keys."""
        return await self._admit(token_hash(token), address,
                                 "The token is not one paypost knows (or it was revoked or expired).")

    async def _admit(self, digest: str | None, address: str, unknown: str) -> Principal:
        who = await self.holder(digest) if digest is not None else None
        if who is not None:
            return who
        wait = await self._failures.failed(address)
        if wait is not None:
            raise TooManyFailures(wait)
        raise UnknownKey(unknown)

    async def ticket(self, token: str) -> tuple[str, int]:
        """A single-use ticket for the live feed, for the key whose token is ``token``, and the
        seconds it may be used within. Only its hash is kept, with the token's hash."""
        if self._tickets is None:
            raise NoTickets("This paypost issues no live-feed tickets: send the key in the Authorization header.")
        ticket = new_token()
        await self._tickets.issue(token_hash(ticket), token_hash(token), self._clock() + TICKET_LIFETIME)
        return ticket, int(TICKET_LIFETIME.total_seconds())

    async def admit_ticket(self, ticket: str, address: str) -> tuple[Principal, str]:
        """Who a live-feed ticket was issued to, and their token's hash; the ticket is used up.
        ``UnknownKey`` for a ticket unknown, used, expired, or whose key no longer holds (and
        ``TooManyFailures`` as for keys)."""
        digest = await self._tickets.redeem(token_hash(ticket), self._clock()) if self._tickets else None
        who = await self._admit(digest, address, "The ticket is not one paypost issued, or it was used or has "
                                "expired: ask POST /api/v1/events/tickets for another.")
        assert digest is not None  # _admit admits no one without it
        return who, digest

    async def authenticate(self, token: str) -> Principal | None:
        """Who holds ``token``; None for a token that is unknown, revoked or expired."""
        return await self.holder(token_hash(token))

    async def holder(self, digest: str) -> Principal | None:
        """Who holds the token whose SHA-256 is ``digest``; None for one unknown, revoked or expired."""
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
