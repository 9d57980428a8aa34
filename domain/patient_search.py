"""Finding the patient (contract section 14): what a practice's system answers to a search.

The office's most common failure is a patient account with no practice-management id. A practice's
system may answer ``GET {base_url}/patients?q=&limit=`` with ``{items: [{patient_id, display}]}``;
paypost hands the answer on as given, and neither stores nor logs the query or the answer.
"""

from __future__ import annotations

from dataclasses import dataclass

from paypost.domain.errors import PaypostError

QUERY_MAX = 200  # characters of a search's text
LIMIT_MAX = 50  # patients one search may answer with
LIMIT_DEFAULT = 20
# What one match may carry: a patient id as paypost stores a mapping's, a display line the office reads.
PATIENT_ID_MAX = 128
DISPLAY_MAX = 500


class SearchNotOffered(PaypostError):
    """The practice's system offers no patient search (it answered 404 or 501, or it is the
    built-in ledger, which keeps no patient names: nothing to search)."""


class SearchFailed(PaypostError):
    """The practice's system could not be asked (refused, unreachable, or an answer paypost cannot read).

    Its message is paypost's own words: never the query, never what the system said."""


class SystemUnreachable(SearchFailed):
    """The practice's system did not answer (timeouts, refused connections, 5xx, 429) after paypost's tries."""


@dataclass(frozen=True, slots=True)
class PatientMatch:
    """One patient a search found: the practice-management id, and what the office recognises them by."""

    patient_id: str
    display: str


def matches(answer: object, limit: int) -> list[PatientMatch]:
    """The matches of a system's answer, at most ``limit``; ``SearchFailed`` if it is not
    ``{items: [{patient_id, display}]}`` (the answer is not quoted: it may name patients)."""
    items = answer.get("items") if isinstance(answer, dict) else None
    if not isinstance(items, list):
        raise SearchFailed("The practice's system answered the search with something other than {items: [...]}.")
    found: list[PatientMatch] = []
    for item in items[:limit]:
        patient_id = item.get("patient_id") if isinstance(item, dict) else None
        display = item.get("display") if isinstance(item, dict) else None
        if isinstance(patient_id, int) and not isinstance(patient_id, bool):
            patient_id = str(patient_id)
        if not isinstance(patient_id, str) or not patient_id.strip() or len(patient_id) > PATIENT_ID_MAX:
            raise SearchFailed("The practice's system answered the search with an item without a usable patient_id.")
        if display is None:
            display = ""
        if not isinstance(display, str):
            raise SearchFailed("The practice's system answered the search with an item whose display is not text.")
        found.append(PatientMatch(patient_id, display[:DISPLAY_MAX]))
    return found
