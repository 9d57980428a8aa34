"""API keys and the count of calls with unknown keys."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

from paypost.domain.access import ApiKey
from paypost.domain.ports import Record


class ApiKeyStore(Protocol):
    """Keys made through the API, each kept with its token's hash only, and who made or revoked them."""

    async def add(self, key: ApiKey, token_hash: str) -> None: ...

    async def by_hash(self, token_hash: str) -> tuple[ApiKey, str] | None:
        """The key whose token has this hash, with the hash as stored (revoked and expired ones too)."""

    async def get(self, key_id: str) -> ApiKey | None: ...

    async def every(self) -> list[ApiKey]:
        """Every key, newest first (revoked ones too)."""

    async def revoke(self, key_id: str, at: datetime) -> ApiKey | None:
        """Revoke a key; None unless this call revoked it."""

    async def record(self, at: datetime, actor: str, action: str, key: ApiKey) -> None:
        """Keep who created or revoked which key, in the keys' own trail."""

    async def trail(self, limit: int = 500) -> list[Record]:
        """The keys' trail, newest first (Records: only rendered by the API)."""


class FailedKeyCounts(Protocol):
    """Calls with an unknown, revoked or expired key, per client address, counted where every API
    process sees the same count (so several processes allow 20 between them, not 20 each)."""

    async def add(self, address: str, at: datetime, window: timedelta) -> tuple[int, datetime]:
        """Count one such call from ``address`` at ``at``, in the address's window if one began less
        than ``window`` before ``at``, else in a new one beginning at ``at``; that window's count so
        far (this call included) and when it began."""
        ...


class FeedTickets(Protocol):
    """Single-use tickets for the live feed (contract section 12: never a key in its URL), kept where
    every API process sees them."""

    async def issue(self, ticket_hash: str, token_hash: str, expires_at: datetime) -> None:
        """Keep a ticket (its hash) for the key whose token has ``token_hash``, until ``expires_at``."""

    async def redeem(self, ticket_hash: str, at: datetime) -> str | None:
        """The token hash of the ticket, once: None for a ticket unknown, used already, or expired at ``at``."""
