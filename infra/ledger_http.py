"""A ledger integration of kind ``http``: a small REST protocol with an idempotency key per posting.

Protocol (documented in the README):

- ``GET  {base_url}/entries/{idempotency_key}``: 200 with ``{"entry_id"}`` if that posting exists, else 404.
- ``POST {base_url}/entries`` with header ``Idempotency-Key`` and body ``{practice_id, patient_id,
  payment_id, refund_id, amount, currency, occurred_at}``: 201 or 200 with ``{"entry_id"}``;
  404 when the patient does not exist; 400, 409 or 422 with ``{"error": {"message"}}`` when refused.
- 5xx, timeouts and refused connections are transient: paypost looks the entry up before every
  re-post (a response may have been lost after the ledger committed), and after its attempts
  gives up with LEDGER_UNAVAILABLE.
- 429 is the system asking paypost to slow down: it waits ``Retry-After`` (or a backoff) and
  asks again, for up to ``THROTTLED_FOR`` seconds, without counting it as an attempt; past that
  the delivery goes back to its queue (a transient failure), never FAILED.
- Requests go only where ``infra/ledger_hosts.py`` allows, and at most ``max_requests_per_second``
  of a practice's system when its integration sets one.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import quote

import httpx
import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential_jitter

from domain.errors import LoadFailure, RefusedHost, TransientFailure
from domain.load_errors import LoadErrorCode
from domain.money import format_money
from domain.posting import Integration, LedgerEntryRequest, LedgerReceipt
from infra.ledger_hosts import HostPolicy

log = structlog.get_logger("paypost.ledger_http")

# How long a practice's system may keep answering 429 before the delivery goes back to its queue.
THROTTLED_FOR = 60.0
# The longest Retry-After honoured in one wait (a larger one is waited in steps, within THROTTLED_FOR).
MAX_RETRY_AFTER = 10.0


class _Transient(TransientFailure):
    def __init__(self, message: str, retry_after: float | None = None, throttled: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.throttled = throttled


def _reason(response: httpx.Response) -> str:
    try:
        body: Any = response.json()
        message = body.get("error", {}).get("message") if isinstance(body, dict) else None
    except ValueError:
        message = None
    text = str(message or response.text or response.reason_phrase)
    return text[:300]


def _retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (an HTTP date is not used by the protocol; it is read as absent)."""
    value = response.headers.get("retry-after", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class _Budget:
    """When the HTTP ledger stops trying a request: after ``attempts`` failures (a 429 is not one),
    or once the system has been asking to slow down for ``THROTTLED_FOR`` seconds."""

    def __init__(self, attempts: int) -> None:
        self._attempts = attempts
        self._failures = 0

    def __call__(self, state: RetryCallState) -> bool:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, _Transient) and error.throttled:
            return (state.seconds_since_start or 0.0) > THROTTLED_FOR
        self._failures += 1
        return self._failures >= self._attempts


_backoff = wait_exponential_jitter(multiplier=0.05, max=1.0)


def _wait(state: RetryCallState) -> float:
    """A 429's ``Retry-After`` (at most ``MAX_RETRY_AFTER``), else a short backoff with jitter."""
    error = state.outcome.exception() if state.outcome else None
    if isinstance(error, _Transient) and error.throttled:
        return min(error.retry_after if error.retry_after is not None else 1.0, MAX_RETRY_AFTER)
    return _backoff(state)


class Limiter:
    """At most ``rate`` requests a second to one practice's system, spaced evenly."""

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self._lock:
            now = time.monotonic()
            self._next = max(now, self._next) + self._interval
            ahead = self._next - self._interval - now
        if ahead > 0:
            await asyncio.sleep(ahead)


class HttpLedger:
    """One practice's HTTP ledger."""

    def __init__(self, client: httpx.AsyncClient, base_url: str, timeout: float, attempts: int,
                 hosts: HostPolicy, limiter: Limiter | None = None) -> None:
        self._client = client
        self._base = base_url.rstrip("/")
        self._timeout = timeout
        self._attempts = attempts
        self._hosts = hosts
        self._limiter = limiter

    async def post(self, request: LedgerEntryRequest) -> LedgerReceipt:
        try:
            await self._hosts.check(self._base)
        except RefusedHost as exc:
            raise LoadFailure(LoadErrorCode.INTEGRATION_NOT_CONFIGURED, f"Its system is refused: {exc}.") from exc
        try:
            async for attempt in AsyncRetrying(retry=retry_if_exception_type(_Transient), stop=_Budget(self._attempts),
                                               wait=_wait, reraise=True):
                with attempt:
                    if attempt.retry_state.attempt_number > 1:
                        found = await self._lookup(request)
                        if found is not None:
                            return found
                    return await self._post_once(request)
        except _Transient as exc:
            if exc.throttled:  # asked to slow down for too long: back to the queue, never FAILED
                raise TransientFailure(f"the practice's system kept answering 429 for {THROTTLED_FOR:g}s") from exc
            raise LoadFailure(LoadErrorCode.LEDGER_UNAVAILABLE, f"Last error: {exc}.") from exc
        raise AssertionError("unreachable")

    async def _call(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        if self._limiter is not None:
            await self._limiter.wait()
        try:
            response = await self._client.request(method, url, timeout=self._timeout, **kwargs)
        except httpx.TimeoutException as exc:
            raise _Transient(f"the ledger did not answer within {self._timeout:g}s") from exc
        except httpx.TransportError as exc:
            raise _Transient(f"the ledger could not be reached ({type(exc).__name__})") from exc
        if response.status_code == 429:
            raise _Transient("the ledger answered 429", retry_after=_retry_after(response), throttled=True)
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

    def __init__(self, attempts: int, default_timeout: float, *, hosts: HostPolicy | None = None) -> None:
        self._client = httpx.AsyncClient(follow_redirects=False)
        self._attempts = attempts
        self._timeout = default_timeout
        self._hosts = hosts or HostPolicy()  # none allowed beyond the rule: https, public addresses
        self._limiters: dict[tuple[str, float], Limiter] = {}

    def for_integration(self, integration: Integration) -> HttpLedger:
        base_url = str(integration.settings.get("base_url", ""))
        setting = integration.settings.get("timeout_seconds", self._timeout)
        timeout = float(setting) if isinstance(setting, (int, float, str)) else self._timeout
        rate = integration.settings.get("max_requests_per_second")
        limiter = None
        if isinstance(rate, (int, float)) and rate > 0:
            # One limiter per system and rate, shared by every ledger built for it.
            limiter = self._limiters.setdefault((base_url, float(rate)), Limiter(float(rate)))
        return HttpLedger(self._client, base_url, timeout, self._attempts, self._hosts, limiter)

    async def close(self) -> None:
        await self._client.aclose()
