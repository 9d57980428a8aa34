"""``/practices/{practice_id}/patient-search``: find a patient in the practice's own system (contract section 14).

paypost asks the practice's system (``GET {base_url}/patients?q=&limit=``) and answers with what it
found; the query and the answer are neither stored nor logged (the access log names the route's
template, never its query string). The access trail records the search, with its count.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from paypost.api.deps import API_V1, Caller, PracticeId, error_answer
from paypost.domain.patient_search import LIMIT_DEFAULT, LIMIT_MAX, QUERY_MAX
from paypost.schemas.api.patient_search import PatientSearchOut

router = APIRouter(prefix=API_V1, tags=["mappings"])


@router.get("/practices/{practice_id}/patient-search", response_model=PatientSearchOut,
            responses={**error_answer(501, when="The practice's system offers no patient search"),
                       **error_answer(502, when="The practice's system answered the search with an error"),
                       **error_answer(503, when="The practice's system did not answer the search")})
async def patient_search(
    practice_id: PracticeId, app: Caller,
    q: Annotated[str, Query(min_length=1, max_length=QUERY_MAX, description="a name, a date of birth, ...")],
    limit: Annotated[int, Query(ge=1, le=LIMIT_MAX)] = LIMIT_DEFAULT,
) -> dict[str, Any]:
    """The patients the practice's system finds for ``q`` (operators): 501 where it offers no search."""
    found = await app.practices.search_patients(practice_id, q, limit)
    items = [{"patient_id": m.patient_id, "display": m.display} for m in found]
    app.access.search(items, practice_id)  # the access trail: who searched which practice, and how many were found
    return {"items": items}
