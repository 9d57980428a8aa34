"""Finding the patient (contract section 14): ``GET /practices/{id}/patient-search?q=`` asks the
practice's own system (``GET {base_url}/patients?q=&limit=``) and answers with what it found; 501 where
the system offers none; operators only; nothing of the query or the answer in any log line (the log
guard watches: the displays and ids here are canaries)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from paypost.bootstrap import Paypost
from paypost.infra.runtime.settings import Settings
from paypost.local.reference_ledger import Faults
from tests.support.api_calls import builtin_practice, get_posting, wait_status
from tests.support.canaries import MEMO
from tests.support.ledgers import ReferenceLedger
from tests.support.tokens import TOKENS, VIEWER
from tests.support.upstream import Upstream

PMS = "clinic-search"
ADMIN = {"Authorization": "Bearer adm-token"}  # reads the access trail
# A patient as the practice's system shows them: the id a mapping needs, a name and a date of birth.
ZELDA = {"patient_id": "EHR-ZELDA", "display": MEMO}
OTHER = {"patient_id": "EHR-OTHER", "display": "Yusuf Canaryperson, born 1970-01-01"}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"api_tokens": f"{TOKENS},adm-token:admin:ada"})


async def set_up(api: httpx.AsyncClient, system: ReferenceLedger, **ledger: Any) -> str:
    r = await api.put(f"/api/v1/practices/{PMS}", json={
        "name": "Search", "ledger": {"kind": "http", "base_url": system.url, "timeout_seconds": 5, **ledger},
        "enabled": True})
    assert r.status_code == 200, r.text
    for patient in (ZELDA, OTHER):
        system.state.patients.add(patient["patient_id"])
        system.state.displays[patient["patient_id"]] = patient["display"]
    return PMS


async def search(api: httpx.AsyncClient, practice_id: str, q: str, **params: Any) -> httpx.Response:
    return await api.get(f"/api/v1/practices/{practice_id}/patient-search", params={"q": q, **params})


@pytest.mark.api_only
async def test_it_answers_what_the_system_found_as_given(api: httpx.AsyncClient, system: ReferenceLedger) -> None:
    practice = await set_up(api, system)
    r = await search(api, practice, "canaryperson")
    assert r.status_code == 200, r.text
    assert r.json() == {"items": [OTHER, ZELDA]}  # in the system's order (the reference one's: by id)
    r = await search(api, practice, "zelda 1961")  # every word, any case
    assert r.json() == {"items": [ZELDA]}
    r = await search(api, practice, "canaryperson", limit=1)
    assert r.json() == {"items": [OTHER]}  # the limit travels to the system
    r = await search(api, practice, "nobody by that name")
    assert r.status_code == 200 and r.json() == {"items": []}
    assert system.state.searches == 4
    assert [path for method, path in system.requests if method == "GET"] == ["/patients"] * 4


@pytest.mark.api_only
async def test_a_system_without_search_and_the_built_in_ledger_answer_501(
    api: httpx.AsyncClient, system: ReferenceLedger,
) -> None:
    practice = await set_up(api, system)
    system.state.faults = Faults(search_offered=False)
    r = await search(api, practice, "zelda")
    assert r.status_code == 501, r.text
    assert r.json()["error"]["code"] == "search_not_offered"
    assert "zelda" not in r.text.lower()  # the error does not quote the query

    builtin = await builtin_practice(api)
    r = await search(api, builtin, "zelda")
    assert r.status_code == 501
    assert r.json()["error"] == {
        "code": "search_not_offered",
        "message": "The built-in ledger keeps patient ids only, no names: it offers no search."}


@pytest.mark.api_only
async def test_a_system_that_does_not_answer_is_503_and_names_no_patient(
    api: httpx.AsyncClient, system: ReferenceLedger,
) -> None:
    practice = await set_up(api, system)
    system.state.faults = Faults(error_rate=1.0)
    r = await search(api, practice, "Canaryperson")
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "practice_system_unavailable"
    assert "Canaryperson" not in r.text


@pytest.mark.api_only
async def test_operators_only_within_scope_and_a_query_is_needed(
    api: httpx.AsyncClient, system: ReferenceLedger,
) -> None:
    practice = await set_up(api, system)
    r = await api.get(f"/api/v1/practices/{practice}/patient-search", params={"q": "zelda"},
                      headers={"Authorization": f"Bearer {VIEWER}"})
    assert r.status_code == 403, r.text
    r = await search(api, "clinic-nowhere", "zelda")
    assert r.status_code == 404
    invalid: list[dict[str, str | int]] = [{"q": ""}, {}, {"q": "x" * 201}, {"q": "zelda", "limit": 0},
                                           {"q": "zelda", "limit": 51}]
    for params in invalid:
        r = await api.get(f"/api/v1/practices/{practice}/patient-search", params=params)
        assert r.status_code == 422, (params, r.text)
    r = await search(api, practice, "   ")
    assert r.status_code == 422 and r.json()["error"]["message"] == "Say what to search for: q is empty."
    assert system.state.searches == 0  # the viewer, the refused and the empty searches never reached it


async def test_choosing_a_found_patient_enters_the_mapping_and_the_failure_loads(
    api: httpx.AsyncClient, upstream: Upstream, system: ReferenceLedger,
) -> None:
    practice = await set_up(api, system)
    await upstream.payment(practice_id=practice, payment_id="s-1", patient_account_id="acct-s",
                           ehr_patient_id=None, amount="42.00")
    await wait_status(api, practice, "s-1", "FAILED")
    [found] = (await search(api, practice, "Zelda")).json()["items"]
    r = await api.put(f"/api/v1/practices/{practice}/patient-accounts/acct-s/mapping",
                      json={"ehr_patient_id": found["patient_id"]})
    assert r.status_code == 200 and r.json()["retried"] == 1, r.text
    await wait_status(api, practice, "s-1", "LOADED")
    posting = await get_posting(api, practice, "s-1")
    assert posting is not None and posting["ehr_patient_id"] == "EHR-ZELDA"
    [entry] = [e for e in system.state.entries.values() if e["payment_id"] == "s-1"]
    assert entry["patient_id"] == "EHR-ZELDA"


@pytest.mark.api_only
async def test_the_search_is_in_the_access_trail_with_its_count_and_nowhere_its_query(
    api: httpx.AsyncClient, paypost: Paypost, system: ReferenceLedger,
) -> None:
    practice = await set_up(api, system)
    assert (await search(api, practice, "canaryperson")).status_code == 200
    assert (await search(api, practice, "nobody")).status_code == 200
    system.state.faults = Faults(search_offered=False)
    assert (await search(api, practice, "zelda")).status_code == 501  # nothing shown: nothing recorded
    await paypost.access_log.flush()
    r = await api.get("/api/v1/access-log", params={"practice_id": practice}, headers=ADMIN)
    assert r.status_code == 200, r.text
    searches = [e for e in r.json()["items"] if e["action"] == "search"]
    assert sorted(e["count"] for e in searches) == [0, 2]
    for entry in searches:
        assert entry["key_name"] == "alice" and entry["role"] == "operator"
        assert entry["route"] == "/api/v1/practices/{practice_id}/patient-search"
        assert entry["practice_id"] == practice
    text = r.text.lower()
    assert "canaryperson" not in text and "nobody" not in text and "ehr-zelda" not in text
