"""What the demo needs to set a practice up."""

from __future__ import annotations

from typing import Protocol


class DemoPractices(Protocol):
    """Sets up a practice and registers its patients, as the API does (``paypost.handlers.practices.Practices``)."""

    async def put(self, practice_id: str, name: str, ledger: dict[str, object], enabled: bool) -> object: ...

    async def register_patient(self, practice_id: str, ehr_patient_id: str) -> bool: ...


class DemoSetup(Protocol):
    """Sets up a practice as the API does (its credentials sealed) and enters a mapping."""

    async def practice(self, practice_id: str, name: str, ledger: dict[str, object]) -> object: ...

    async def mapping(self, practice_id: str, patient_account_id: str, ehr_patient_id: str) -> object: ...
