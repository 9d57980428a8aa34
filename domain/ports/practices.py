"""Practices, their patients and the mappings to the practice-management system's ids."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from paypost.domain.access import Scope
from paypost.domain.integrations import Practice
from paypost.domain.ports import Record
from paypost.domain.posting import (
    Integration,
    PostingKey,
)


class PracticeDirectory(Protocol):
    """Practices, their ledger integrations, and the patients registered in the built-in ledger."""

    async def integration(self, practice_id: str) -> Integration | None: ...

    async def put_practice(self, practice_id: str, name: str, ledger: Record, enabled: bool,
                           at: datetime) -> Practice:
        """Set up or change a practice; ``ledger`` is its integration as stored (a secret sealed)."""

    async def get_practice(self, practice_id: str) -> Practice | None: ...

    async def register_patient(self, practice_id: str, ehr_patient_id: str, at: datetime) -> bool: ...

    async def patient_registered(self, practice_id: str, ehr_patient_id: str) -> bool: ...

    async def list_practices(self, scope: Scope) -> list[Practice]:
        """The practices set up within ``scope``, by id."""


class MappingStore(Protocol):
    """(practice_id, patient_account_id) → the practice-management patient id."""

    async def get(self, practice_id: str, patient_account_id: str) -> str | None: ...

    async def get_many(self, accounts: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """The mappings of several (practice_id, patient_account_id) at once (one read); those not
        mapped are left out."""

    async def put(self, practice_id: str, patient_account_id: str, ehr_patient_id: str, source: str,
                  at: datetime) -> str | None:
        """Enter or correct a mapping; the id it held before (None if new)."""


@dataclass(frozen=True, slots=True)
class MappingFailure:
    """A FAILED posting whose failure a mapping heals (``paypost.domain.rules.MAPPING_FIXES``)."""

    key: PostingKey
    patient_account_id: str
    tried_ehr_patient_id: str | None  # the patient its load was tried with (None: no mapping then)


class MappingFailures(Protocol):
    async def mapping_failures(self, limit: int, after: PostingKey | None = None) -> list[MappingFailure]:
        """Retryable FAILED postings of every practice that failed for want of a (correct) mapping:
        a page of at most ``limit`` in the order of their keys, from the first after ``after``."""
