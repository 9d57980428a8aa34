"""Patient mappings: entered through the API or ``patient.mapping.updated``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Protocol

import structlog

from consumers.posting import Clock, utc_now

log = structlog.get_logger("paypost.mappings")


class MappingWriter(Protocol):
    async def put(
        self, practice_id: str, patient_account_id: str, ehr_patient_id: str, source: str, at: datetime
    ) -> str | None: ...


# Called after a mapping changes, to retry that patient account's failures (self-healing).
OnMappingChanged = Callable[[str, str, str, str], Awaitable[int]]


class MappingService:
    """Enters or corrects a mapping, then lets paypost retry what the missing mapping blocked."""

    def __init__(self, mappings: MappingWriter, on_changed: OnMappingChanged | None = None,
                 clock: Clock = utc_now) -> None:
        self._mappings = mappings
        self._on_changed = on_changed
        self._clock = clock

    async def update(self, practice_id: str, patient_account_id: str, ehr_patient_id: str, actor: str,
                     source: str) -> int:
        """Store the mapping; returns how many failed postings were sent back by itself."""
        before = await self._mappings.put(practice_id, patient_account_id, ehr_patient_id, source, self._clock())
        log.info("mapping_updated", practice_id=practice_id, patient_account_id=patient_account_id,
                 changed=before != ehr_patient_id, source=source)
        if self._on_changed is None:
            return 0
        return await self._on_changed(practice_id, patient_account_id, ehr_patient_id, actor)
