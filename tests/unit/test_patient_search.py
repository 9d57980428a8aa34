"""What paypost reads of a practice's answer to a patient search (contract section 14), and the host
policy on the way there. The real round trips are in tests/integration/test_patient_search.py; here,
answers a reference system never gives: 404, a body that is not JSON, items without ids."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from paypost.domain.patient_search import PatientMatch, SearchFailed, SearchNotOffered, matches
from paypost.infra.ledgers.hosts import HostPolicy
from paypost.infra.ledgers.http import HttpLedger


def ledger(answer: Callable[[httpx.Request], httpx.Response], base_url: str = "https://pms.example",
           hosts: HostPolicy | None = None) -> tuple[HttpLedger, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer(request)

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return HttpLedger(client, base_url, 1.0, 3, hosts or HostPolicy(["pms.example"])), seen


async def test_the_query_and_limit_travel_as_the_protocol_says() -> None:
    search, seen = ledger(lambda _: httpx.Response(200, json={"items": [{"patient_id": "P-1", "display": "A"}]}))
    assert await search.search_patients("ann 1961", 7) == [PatientMatch("P-1", "A")]
    [request] = seen
    assert request.url.path == "/patients"
    assert dict(request.url.params) == {"q": "ann 1961", "limit": "7"}


@pytest.mark.parametrize("status", [404, 501])
async def test_404_and_501_say_no_search_is_offered_asked_once(status: int) -> None:
    search, seen = ledger(lambda _: httpx.Response(status))
    with pytest.raises(SearchNotOffered):
        await search.search_patients("ann", 5)
    assert len(seen) == 1  # no retry changes a system that has no search


@pytest.mark.parametrize("answer", [
    httpx.Response(200, text="<html>"), httpx.Response(200, json=[{"patient_id": "P"}]),
    httpx.Response(200, json={"items": [{"display": "no id"}]}), httpx.Response(403, json={}),
])
async def test_an_answer_paypost_cannot_read_fails_the_search_without_quoting_it(answer: httpx.Response) -> None:
    search, _ = ledger(lambda _: answer)
    with pytest.raises(SearchFailed) as raised:
        await search.search_patients("Canaryperson", 5)
    assert "Canaryperson" not in str(raised.value) and "no id" not in str(raised.value)


async def test_a_host_the_policy_refuses_is_never_asked() -> None:
    search, seen = ledger(lambda _: httpx.Response(200, json={"items": []}), base_url="http://pms.example",
                          hosts=HostPolicy())
    with pytest.raises(SearchFailed, match="could not be asked"):
        await search.search_patients("ann", 5)
    assert seen == []


def test_matches_keeps_the_limit_and_reads_numeric_ids() -> None:
    answer = {"items": [{"patient_id": 17, "display": "B"}, {"patient_id": "P-2"}, {"patient_id": "P-3"}]}
    assert matches(answer, 2) == [PatientMatch("17", "B"), PatientMatch("P-2", "")]
    with pytest.raises(SearchFailed):
        matches({"items": [{"patient_id": True}]}, 5)
