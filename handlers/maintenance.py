"""The platform staff's maintenance: checking the audit trail, and sealing secrets again after a key rotation."""

from __future__ import annotations

from paypost.domain.audit_chain import Verification
from paypost.domain.integrations import MissingSecretKey
from paypost.domain.ports.maintenance import AuditTrail, SealedSecrets


class Maintenance:
    def __init__(self, audit: AuditTrail, secrets: SealedSecrets | None) -> None:
        self._audit = audit
        self._secrets = secrets  # None: paypost has no PAYPOST_SECRET_KEY

    async def verify_audit(self) -> Verification:
        """Seal what is not sealed yet, then check the whole chain."""
        await self._audit.seal()
        return await self._audit.verify()

    async def reseal_secrets(self) -> int:
        """Seal every stored practice secret again with the first key of PAYPOST_SECRET_KEY; how many.

        Raises ``MissingSecretKey`` without a key, ``SecretKeyError`` for a secret no key opens."""
        if self._secrets is None:
            raise MissingSecretKey("PAYPOST_SECRET_KEY (or PAYPOST_SECRET_KEY_FILE) is not set: nothing to rotate with")
        return await self._secrets.reseal_all()
