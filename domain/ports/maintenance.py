"""The process's readiness, the audit trail's seal, and the secrets kept sealed."""

from __future__ import annotations

from typing import Protocol

from paypost.domain.audit_chain import Verification


class Readiness(Protocol):
    """Whether the broker and the database answer."""

    async def problems(self) -> dict[str, str | None]:
        """Each service by name, with None if it answers, else why not (an error's name)."""
        ...


class AuditTrail(Protocol):
    """The audit trail's hash chain (``paypost.domain.audit_chain``): sealed as entries are written, checked whole."""

    async def seal(self, limit: int = 500) -> int:
        """Seal the entries written since the last seal (up to ``limit`` postings); how many were sealed."""

    async def verify(self, against: list[dict[str, object]] | None = None) -> Verification:
        """Recompute every sealed entry and record, every seal from the one before, and each seal's
        signature; with ``against`` (an export of the seals' heads), compare the chain with it."""

    async def heads(self) -> list[dict[str, object]]:
        """Each seal's head (seq, hash, time, key id, signature), in order."""


class SealedSecrets(Protocol):
    """The practices' secrets as stored, sealed (``SecretBox``)."""

    async def reseal_all(self) -> int:
        """Seal each again with the first key (a key rotation); how many. Raises
        ``paypost.domain.integrations.SecretKeyError`` for one that no configured key opens."""
