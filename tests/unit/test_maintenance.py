"""The maintenance handler the CLI's `audit verify` and `secrets rotate` call (``paypost.handlers.maintenance``)."""

from __future__ import annotations

import pytest

from paypost.domain.audit_chain import Verification
from paypost.domain.integrations import MissingSecretKey
from paypost.handlers.maintenance import Maintenance


class Trail:
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def seal(self, limit: int = 500) -> int:
        self.calls.append("seal")
        return 3

    async def verify(self) -> Verification:
        self.calls.append("verify")
        return Verification(seals=1, entries=3)


class Secrets:
    async def reseal_all(self) -> int:
        return 2


async def test_verifying_the_audit_trail_seals_what_is_not_sealed_first() -> None:
    trail = Trail()
    result = await Maintenance(trail, None).verify_audit()
    assert trail.calls == ["seal", "verify"]
    assert (result.seals, result.entries, result.ok) == (1, 3, True)


async def test_sealing_secrets_again_needs_a_key() -> None:
    with pytest.raises(MissingSecretKey, match="PAYPOST_SECRET_KEY"):
        await Maintenance(Trail(), None).reseal_secrets()
    assert await Maintenance(Trail(), Secrets()).reseal_secrets() == 2
