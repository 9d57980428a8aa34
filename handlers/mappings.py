"""Patient mappings: entered through the API or ``patient.mapping.updated``."""

from __future__ import annotations

import structlog

from paypost.domain.patient_ref import patient_ref
from paypost.domain.ports.practices import MappingStore
from paypost.handlers.alert_delivery import AlertDelivery
from paypost.handlers.clock import Clock, utc_now
from paypost.handlers.healing import Healing

log = structlog.get_logger("paypost.mappings")


class MappingService:
    """Enters or corrects a mapping, then lets paypost retry what the missing mapping blocked."""

    def __init__(self, mappings: MappingStore, healing: Healing, clock: Clock = utc_now,
                 alerts: AlertDelivery | None = None) -> None:
        self._mappings = mappings
        self._healing = healing
        self._clock = clock
        self._alerts = alerts

    async def update(self, practice_id: str, patient_account_id: str, ehr_patient_id: str, actor: str,
                     source: str) -> int:
        """Store the mapping; returns how many failed postings are sent back by themselves."""
        before = await self._mappings.put(practice_id, patient_account_id, ehr_patient_id, source, self._clock())
        log.info("mapping_updated", practice_id=practice_id, patient_ref=patient_ref(practice_id, patient_account_id),
                 changed=before != ehr_patient_id, source=source)
        if self._alerts is not None:  # a flag that waited for the mapping goes to the system now
            await self._alerts.nudge(practice_id, patient_account_id)
        return await self._healing.after_mapping(practice_id, patient_account_id, ehr_patient_id, actor)
