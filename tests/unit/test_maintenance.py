"""The maintenance handler the CLI's `audit verify` and `secrets rotate` call (``paypost.handlers.maintenance``)."""

from __future__ import annotations

from datetime import datetime

import pytest

from paypost.domain.access_trail import PurgeCounts, Retention
from paypost.domain.audit_chain import Verification
from paypost.domain.integrations import MissingSecretKey
from paypost.handlers.maintenance import Maintenance
from paypost.handlers.retention import RetentionService


class Trail:
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def seal(self, limit: int = 500) -> int:
        self.calls.append("seal")
        return 3 if self.calls.count("seal") == 1 else 0  # a first round seals 3, the next finds nothing left

    async def verify(self, against: list[dict[str, object]] | None = None) -> Verification:
        self.calls.append("verify")
        return Verification(seals=1, entries=3)

    async def heads(self) -> list[dict[str, object]]:
        return []


class NoRetention:
    """Retention is not what these tests are about (tests/integration/test_retention.py is)."""

    async def hold(self, practice_id: str, reason: str, by: str) -> None: ...
    async def lift(self, practice_id: str) -> None: ...
    async def held(self) -> list[str]:
        return []

    async def purge(self, retention: Retention, now: datetime, *, dry_run: bool, page: int = 1000,
                    progress: object = None, by: str = "") -> PurgeCounts:
        return PurgeCounts()

    async def done_on(self, day: str) -> bool:
        return False

    async def mark_done(self, day: str) -> None: ...


RETENTION = RetentionService(NoRetention(), Retention())


class Secrets:
    async def reseal_all(self) -> int:
        return 2


async def test_verifying_the_audit_trail_seals_what_is_not_sealed_first() -> None:
    trail = Trail()
    result = await Maintenance(trail, None, RETENTION).verify_audit()
    assert trail.calls == ["seal", "seal", "verify"]
    assert (result.seals, result.entries, result.ok) == (1, 3, True)


async def test_sealing_secrets_again_needs_a_key() -> None:
    with pytest.raises(MissingSecretKey, match="PAYPOST_SECRET_KEY"):
        await Maintenance(Trail(), None, RETENTION).reseal_secrets()
    assert await Maintenance(Trail(), Secrets(), RETENTION).reseal_secrets() == 2
