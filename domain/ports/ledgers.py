"""Ledgers: the built-in one, a practice's system, adapter kinds, and what reaching a system needs."""

from __future__ import annotations

from typing import Protocol

from paypost.domain.patient_search import PatientMatch
from paypost.domain.ports import Record
from paypost.domain.posting import (
    Integration,
    LedgerEntryRequest,
    LedgerReceipt,
)


class Ledger(Protocol):
    """A practice-management ledger. Posting the same request twice makes one entry."""

    async def post(self, request: LedgerEntryRequest) -> LedgerReceipt:
        """Post an entry; raises LoadFailure for what only a person can fix. With
        ``request.maybe_posted`` an earlier call may have made the entry, its answer lost: find it
        by its idempotency key before making one."""


class LedgerFactory(Protocol):
    def for_integration(self, integration: Integration) -> Ledger: ...


class LedgerAdapter(Protocol):
    """What a package registers under the entry point group ``paypost.ledgers``: a practice's ledger
    from the settings of its integration (every field but ``kind``, its ``auth`` secret opened).

    Raise ``ValueError`` (a pydantic ``ValidationError`` is one) for settings it refuses: paypost
    calls it when a practice is saved, to check them, and answers 400 with the error's words (a
    pydantic error's locations and messages only, never its input). So build cheaply and open
    connections on the first ``post``. A ledger with an ``async aclose()`` is closed when paypost stops.
    """

    def __call__(self, settings: dict[str, object]) -> Ledger: ...


class LedgerKinds(Protocol):
    """The ledger kinds this paypost has beyond the contract's ``builtin`` and ``http``: adapters."""

    async def check(self, kind: str, settings: Record) -> None:
        """Raise ``UnknownLedgerKind`` unless an adapter provides ``kind``, and
        ``InvalidLedgerSettings`` if it refuses ``settings`` (``paypost.domain.integrations``)."""


class SecretBox(Protocol):
    """Seals a practice's secret for storage and opens it again (``infra/ledgers/secrets.py``)."""

    def seal(self, secret: str) -> str: ...

    def open(self, sealed: str) -> str: ...


class UrlPolicy(Protocol):
    """Where a practice's system may be reached (contract section 7)."""

    async def check(self, url: str) -> None:
        """Raise ``paypost.domain.errors.RefusedHost`` naming the rule unless paypost may call ``url``."""


class LedgerEntries(Protocol):
    """The built-in ledger's entries of one patient, for the office to read."""

    async def entries(self, practice_id: str, ehr_patient_id: str) -> list[Record]:
        """The entries as stored (a Record: only rendered by the API, never inspected)."""


class Credentials(Protocol):
    """What a request to a practice's system carries to say it is paypost."""

    async def authorization(self) -> str | None:
        """The ``Authorization`` header's value (None: the system needs none)."""

    def refused(self) -> bool:
        """The system answered 401: forget what was sent; whether asking once more may help."""


# ---- finding the patient (contract section 14) ---------------------------------------------------

class PatientSearch(Protocol):
    """Asks a practice's system for the patients matching a text (``paypost.domain.patient_search``)."""

    async def search(self, practice_id: str, query: str, limit: int) -> list[PatientMatch]:
        """At most ``limit`` matches, as the system gave them. Raises ``SearchNotOffered`` where the
        practice's system has no search, ``SystemUnreachable`` or ``SearchFailed`` where it could not
        be asked; the query is never logged, stored or put in an error."""
