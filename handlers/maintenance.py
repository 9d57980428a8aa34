"""The platform staff's maintenance: checking the audit trail, and sealing secrets again after a key rotation."""

from __future__ import annotations

from paypost.domain.access_trail import PurgeCounts
from paypost.domain.audit_chain import Verification
from paypost.domain.integrations import MissingSecretKey
from paypost.domain.ports.maintenance import AuditTrail, SealedSecrets
from paypost.domain.ports.patient_data import DutyLease, PurgeProgress
from paypost.handlers.retention import RetentionService


class Maintenance:
    def __init__(self, audit: AuditTrail, secrets: SealedSecrets | None, retention: RetentionService,
                 daily_lease: DutyLease | None = None) -> None:
        """``daily_lease``: the lease of the day's purge, the one ``paypost run``'s workers take."""
        self._daily_lease = daily_lease
        self._audit = audit
        self._secrets = secrets  # None: paypost has no PAYPOST_SECRET_KEY
        self._retention = retention

    async def verify_audit(self, against: list[dict[str, object]] | None = None) -> Verification:
        """Seal what is not sealed yet, then check the whole chain (and, given an export of the
        seals' heads, that the chain is still the one exported)."""
        while await self._audit.seal():
            pass
        return await self._audit.verify(against)

    async def audit_heads(self) -> list[dict[str, object]]:
        """The seals' heads, to keep outside the database (everything is sealed first)."""
        while await self._audit.seal():
            pass
        return await self._audit.heads()

    async def purge(self, *, dry_run: bool, page: int = 1000, progress: PurgeProgress | None = None) -> PurgeCounts:
        """What retention removes (``dry_run``: would remove), then everything it wrote sealed."""
        counts = await self._retention.purge(dry_run=dry_run, page=page, progress=progress, by="paypost purge")
        if not dry_run:
            while await self._audit.seal():
                pass
        return counts

    async def purge_daily(self, page: int = 1000) -> PurgeCounts | None:
        """The day's purge, as a scheduler runs it: under the lease the workers' daily purge takes, and
        nothing if today's purge is done or another process is doing it (None then)."""
        assert self._daily_lease is not None, "built by paypost.bootstrap.maintenance, which hands the lease in"
        counts = await self._retention.purge_once_today(self._daily_lease, page)
        if counts is not None:
            while await self._audit.seal():
                pass
        return counts

    async def reseal_secrets(self) -> int:
        """Seal every stored practice secret again with the first key of PAYPOST_SECRET_KEY; how many.

        Raises ``MissingSecretKey`` without a key, ``SecretKeyError`` for a secret no key opens."""
        if self._secrets is None:
            raise MissingSecretKey("PAYPOST_SECRET_KEY (or PAYPOST_SECRET_KEY_FILE) is not set: nothing to rotate with")
        return await self._secrets.reseal_all()
