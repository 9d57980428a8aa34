"""The PatientSearch port (contract section 14): asks the practice's own system for its patients.

- ``http``: ``GET {base_url}/patients?q=&limit=`` through the practice's HTTP ledger (its host
  policy, credentials and request rate, as an entry's request).
- ``builtin``: no search (501). The built-in ledger keeps registered patient ids and no names, so
  there is nothing the office could recognise a patient by.
- an adapter's kind: its ledger's ``search_patients(query, limit)`` if it has one, else no search.
"""

from __future__ import annotations

import inspect
from typing import Any

from paypost.domain.errors import LoadFailure, TransientFailure
from paypost.domain.patient_search import PatientMatch, SearchFailed, SearchNotOffered, SystemUnreachable, matches
from paypost.domain.ports.ledgers import LedgerFactory
from paypost.domain.ports.practices import PracticeDirectory
from paypost.infra.ledgers.http import HttpLedgers


class SystemPatientSearch:
    def __init__(self, directory: PracticeDirectory, http: HttpLedgers, ledgers: LedgerFactory) -> None:
        self._directory = directory
        self._http = http
        self._ledgers = ledgers  # every kind's ledger: an adapter's may search

    async def search(self, practice_id: str, query: str, limit: int) -> list[PatientMatch]:
        integration = await self._directory.integration(practice_id)
        if integration is None or not integration.enabled:
            raise SearchNotOffered("The practice has no enabled practice-management system to search.")
        if integration.kind == "http":
            return await self._http.for_integration(integration).search_patients(query, limit)
        if integration.kind == "builtin":
            raise SearchNotOffered("The built-in ledger keeps patient ids only, no names: it offers no search.")
        ledger: Any = self._ledgers.for_integration(integration)
        search = getattr(getattr(ledger, "ledger", ledger), "search_patients", None)  # Guarded wraps an adapter's
        if search is None:
            raise SearchNotOffered(f"The ledger of kind {integration.kind!r} offers no patient search.")
        try:
            answer = search(query, limit)
            if inspect.isawaitable(answer):
                answer = await answer
        except (SearchNotOffered, SearchFailed):
            raise
        except TransientFailure as exc:
            raise SystemUnreachable(f"The ledger of kind {integration.kind!r} did not answer the search.") from exc
        except (LoadFailure, Exception) as exc:  # an adapter's own error: named by its class only
            raise SearchFailed(f"The ledger of kind {integration.kind!r} failed the search "
                               f"({type(exc).__name__}).") from exc
        return matches(answer if isinstance(answer, dict) else {"items": answer}, limit)
