"""Practices: their ledger integration, and the patients of the built-in ledger."""

from __future__ import annotations

from dataclasses import dataclass

from paypost.domain.access import Scope
from paypost.domain.errors import PaypostError
from paypost.domain.integrations import CONTRACT_KINDS, SEALED, MissingSecretKey, Practice, secret_of, without_secret
from paypost.domain.outages import PracticeOutage
from paypost.domain.patient_search import LIMIT_MAX, QUERY_MAX, PatientMatch, SearchNotOffered
from paypost.domain.ports import Record
from paypost.domain.ports.ledgers import LedgerEntries, LedgerKinds, PatientSearch, SecretBox, UrlPolicy
from paypost.domain.ports.practices import PracticeDirectory
from paypost.handlers.clock import Clock, utc_now
from paypost.handlers.outages import Outages


class NotFound(PaypostError):
    """What was asked for does not exist (or, for a caller, is not there to see)."""


def practice_not_found(practice_id: str) -> NotFound:
    """What a call naming a practice that is not set up (or not in the caller's scope) is told."""
    return NotFound(f"Practice {practice_id} is not set up.")


@dataclass(frozen=True, slots=True)
class PracticeStatus:
    """A practice, with its hold while its system is failing or held, and how many payments wait for it."""

    practice: Practice
    hold: PracticeOutage | None = None
    waiting: int = 0


class Practices:
    def __init__(self, directory: PracticeDirectory, ledger: LedgerEntries, urls: UrlPolicy,
                 secrets: SecretBox | None, outages: Outages, kinds: LedgerKinds, clock: Clock = utc_now,
                 patients: PatientSearch | None = None) -> None:
        self._directory = directory
        self._patients = patients  # None: no practice's system is asked (every search is 501)
        self._ledger = ledger
        self._urls = urls
        self._secrets = secrets  # None: paypost has no PAYPOST_SECRET_KEY
        self._outages = outages
        self._kinds = kinds
        self._clock = clock

    async def put(self, practice_id: str, name: str, ledger: Record, enabled: bool) -> Practice:
        """Set up (or change) a practice's ledger integration; nothing is saved if a kind no adapter
        provides is named (``UnknownLedgerKind``), its adapter refuses the settings
        (``InvalidLedgerSettings``), or a system is at a URL paypost must not call (``RefusedHost``)."""
        kind = str(ledger.get("kind"))
        if kind not in CONTRACT_KINDS:
            await self._kinds.check(kind, {k: v for k, v in ledger.items() if k != "kind"})
        auth = ledger.get("auth")
        for url in (ledger.get("base_url"), auth.get("token_url") if isinstance(auth, dict) else None):
            if isinstance(url, str):
                await self._urls.check(url)
        if isinstance(auth, dict):
            ledger = {**ledger, "auth": self._sealed(auth)}
        return await self._directory.put_practice(practice_id, name, ledger, enabled, self._clock())

    def _sealed(self, auth: Record) -> Record:
        """The auth as it is stored: its secret sealed, never plain."""
        secret = secret_of(auth)
        if secret is None:
            return without_secret(auth)
        if self._secrets is None:
            raise MissingSecretKey("credentials with a secret need PAYPOST_SECRET_KEY (or PAYPOST_SECRET_KEY_FILE) "
                                   "to be set, so that paypost can keep them encrypted")
        return {**without_secret(auth), SEALED: self._secrets.seal(secret)}

    async def get(self, practice_id: str) -> PracticeStatus:
        """The practice, with its hold while its system is failing or held."""
        practice = await self._directory.get_practice(practice_id)
        if practice is None:
            raise practice_not_found(practice_id)
        outage = await self._outages.store.get(practice_id)
        return PracticeStatus(practice, outage, await self._outages.waiting(practice_id) if outage else 0)

    async def hold(self, practice_id: str, reason: str, actor: str) -> PracticeStatus:
        """Hold the practice by hand: its payments are HELD, nothing goes to its system until released."""
        await self.get(practice_id)
        await self._outages.hold_by_hand(practice_id, reason, actor)
        return await self.get(practice_id)

    async def release(self, practice_id: str, actor: str) -> PracticeStatus:
        """Release a held (or failing) practice: its held payments load, in the order received."""
        await self.get(practice_id)
        await self._outages.release_by_hand(practice_id, actor)
        return await self.get(practice_id)

    async def in_scope(self, scope: Scope) -> list[Practice]:
        """The practices set up within ``scope``, by id."""
        return await self._directory.list_practices(scope)

    async def register_patient(self, practice_id: str, ehr_patient_id: str) -> bool:
        """Register a patient in the built-in ledger (no patient names are needed or kept); True if new."""
        return await self._directory.register_patient(practice_id, ehr_patient_id, self._clock())

    async def ledger(self, practice_id: str, ehr_patient_id: str) -> list[Record]:
        """A registered patient's entries in the built-in ledger."""
        if not await self._directory.patient_registered(practice_id, ehr_patient_id):
            raise NotFound(f"Patient {ehr_patient_id} is not registered for practice {practice_id}.")
        return await self._ledger.entries(practice_id, ehr_patient_id)

    async def search_patients(self, practice_id: str, query: str, limit: int) -> list[PatientMatch]:
        """Ask the practice's system for the patients matching ``query`` (contract section 14).

        Nothing of the query or the answer is stored or logged here: the caller records the search's
        count in the access trail. ``InvalidSearch`` for an empty or overlong query or a limit out of
        range; ``SearchNotOffered`` where the system has no search."""
        text = query.strip()
        if not text:
            raise InvalidSearch("Say what to search for: q is empty.")
        if len(text) > QUERY_MAX:
            raise InvalidSearch(f"q is at most {QUERY_MAX} characters.")
        if not 1 <= limit <= LIMIT_MAX:
            raise InvalidSearch(f"limit is from 1 to {LIMIT_MAX}.")
        await self.get(practice_id)  # a practice that is not set up: 404
        if self._patients is None:
            raise SearchNotOffered("This paypost asks no practice's system for patients.")
        return await self._patients.search(practice_id, text, limit)


class InvalidSearch(PaypostError, ValueError):
    """A patient search paypost cannot send: no text, too much, or a limit out of range."""
