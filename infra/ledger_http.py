"""A ledger integration of kind ``http``: a small REST protocol with an idempotency key per posting.

Protocol (documented in the README):

- ``GET  {base_url}/entries/{idempotency_key}``: 200 with ``{"entry_id"}`` if that posting exists, else 404.
- ``POST {base_url}/entries`` with header ``Idempotency-Key`` and body ``{practice_id, patient_id,
  payment_id, refund_id, amount, currency, occurred_at}``: 201 or 200 with ``{"entry_id"}``;
  404 when the patient does not exist; 400, 409 or 422 with ``{"error": {"message"}}`` when refused.
- 5xx, timeouts and refused connections are transient: paypost looks the entry up before every
  re-post (a response may have been lost after the ledger committed), and after its attempts
  gives up with LEDGER_UNAVAILABLE.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import structlog
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from domain.errors import LoadFailure, TransientFailure
from domain.load_errors import LoadErrorCode
from domain.money import format_money
from domain.posting import Integration, LedgerEntryRequest, LedgerReceipt

log = structlog.get_logger("paypost.ledger_http")


class _Transient(TransientFailure):
    pass


def _reason(response: httpx.Response) -> str:
    try:
        body: Any = response.json()
        message = body.get("error", {}).get("message") if isinstance(body, dict) else None
    except ValueError:
        message = None
    text = str(message or response.text or response.reason_phrase)
    return text[:300]


class HttpLedger:
    """One practice's HTTP ledger."""

    def __init__(self, client: httpx.AsyncClient, base_url: str, timeout: float, attempts: int) -> None:
        self._client = client
        self._base = base_url.rstrip("/")
        self._timeout = timeout
        self._attempts = attempts

    async def post(self, request: LedgerEntryRequest) -> LedgerReceipt:
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(_Transient),
                wait=wait_exponential_jitter(multiplier=0.05, max=1.0),
                stop=stop_after_attempt(self._attempts),
                reraise=True,
            ):
                with attempt:
                    if attempt.retry_state.attempt_number > 1:
                        found = await self._lookup(request)
                        if found is not None:
                            return found
                    return await self._post_once(request)
        except _Transient as exc:
            raise LoadFailure(LoadErrorCode.LEDGER_UNAVAILABLE, f"Last error: {exc}.") from exc
        raise AssertionError("unreachable")

    async def _call(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._client.request(method, url, timeout=self._timeout, **kwargs)
        except httpx.TimeoutException as exc:
            raise _Transient(f"the ledger did not answer within {self._timeout:g}s") from exc
        except httpx.TransportError as exc:
            raise _Transient(f"the ledger could not be reached ({type(exc).__name__})") from exc
        if response.status_code >= 500:
            raise _Transient(f"the ledger answered {response.status_code}")
        return response

    async def _lookup(self, request: LedgerEntryRequest) -> LedgerReceipt | None:
        response = await self._call("GET", f"{self._base}/entries/{quote(request.idempotency_key, safe='')}")
        if response.status_code == 200:
            return LedgerReceipt(entry_id=str(response.json()["entry_id"]), already_posted=True)
        return None

    async def _post_once(self, request: LedgerEntryRequest) -> LedgerReceipt:
        response = await self._call(
            "POST", f"{self._base}/entries",
            headers={"Idempotency-Key": request.idempotency_key},
            json={
                "practice_id": request.practice_id, "patient_id": request.ehr_patient_id,
                "payment_id": request.payment_id, "refund_id": request.refund_id,
                "amount": format_money(request.amount), "currency": request.currency,
                "occurred_at": request.occurred_at.isoformat(),
            },
        )
        if response.status_code in (200, 201):
            return LedgerReceipt(entry_id=str(response.json()["entry_id"]),
                                 already_posted=response.status_code == 200)
        if response.status_code == 404:
            raise LoadFailure(LoadErrorCode.PATIENT_NOT_FOUND,
                              f"The ledger does not know patient {request.ehr_patient_id}.")
        raise LoadFailure(LoadErrorCode.LEDGER_REJECTED, f"The ledger said: {_reason(response)}")


class HttpLedgers:
    """Builds the HTTP ledger of each practice over one shared connection pool."""

    def __init__(self, attempts: int, default_timeout: float) -> None:
        self._client = httpx.AsyncClient(follow_redirects=False)
        self._attempts = attempts
        self._timeout = default_timeout

    def for_integration(self, integration: Integration) -> HttpLedger:
        base_url = str(integration.settings.get("base_url", ""))
        setting = integration.settings.get("timeout_seconds", self._timeout)
        timeout = float(setting) if isinstance(setting, (int, float, str)) else self._timeout
        return HttpLedger(self._client, base_url, timeout, self._attempts)

    async def close(self) -> None:
        await self._client.aclose()
