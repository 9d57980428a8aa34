"""A ledger integration of kind ``http``: a small REST protocol with an idempotency key per posting.

Protocol (documented in the README):

- ``GET  {base_url}/entries/{idempotency_key}``: 200 with ``{"entry_id"}`` if that posting exists, else 404.
- ``POST {base_url}/entries`` with header ``Idempotency-Key`` and body ``{practice_id, patient_id,
  payment_id, refund_id, kind, reversal_id, amount, currency, occurred_at}``: 201 or 200 with
  ``{"entry_id"}``; ``kind`` is ``payment``, ``refund``, ``void``, ``return``, ``chargeback`` or
  ``dispute_won``, and ``payment_id`` the payment a refund or reversal is against;
  404 when the patient does not exist; 400, 409 or 422 with ``{"error": {"message"}}`` when refused.
- 5xx, timeouts and refused connections are transient: paypost looks the entry up before every
  re-post (a response may have been lost after the ledger committed), the first request of a call
  included when an earlier call was sent (``LedgerEntryRequest.maybe_posted``), and after its attempts
  raises ``LedgerUnreachable``: the payment waits for the system (``handlers/outages.py``), never FAILED.
- 429 is the system asking paypost to slow down: it waits ``Retry-After`` (or a backoff) and
  asks again, for up to ``THROTTLED_FOR`` seconds, without counting it as an attempt; past that
  the delivery goes back to its queue (a transient failure), never FAILED.
- Requests go only where ``infra/ledgers/hosts.py`` allows, and at most ``max_requests_per_second``
  of a practice's system when its integration sets one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import httpx
import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential_jitter

from paypost.domain.alerts import Alert, AlertState
from paypost.domain.errors import LedgerUnreachable, LoadFailure, RefusedHost, TransientFailure, loggable
from paypost.domain.integrations import SEALED
from paypost.domain.load_errors import LoadErrorCode
from paypost.domain.money import format_money
from paypost.domain.patient_search import PatientMatch, SearchFailed, SearchNotOffered, SystemUnreachable, matches
from paypost.domain.ports.ledgers import Credentials, SecretBox
from paypost.domain.ports.practices import PracticeDirectory
from paypost.domain.posting import Integration, LedgerEntryRequest, LedgerReceipt
from paypost.infra.ledgers.credentials import BearerToken, ClientCredentials, NoCredentials
from paypost.infra.ledgers.hosts import HostPolicy
from paypost.infra.ledgers.requests import Transient, answer, reason
from paypost.schemas.practice_system import FlagBody, TaskBody

T = TypeVar("T")
log = structlog.get_logger("paypost.ledger_http")

# How long a practice's system may keep answering 429 before the delivery goes back to its queue.
THROTTLED_FOR = 60.0
# The longest Retry-After honoured in one wait (a larger one is waited in steps, within THROTTLED_FOR).
MAX_RETRY_AFTER = 10.0


class _Budget:
    """When the HTTP ledger stops trying a request: after ``attempts`` failures (a 429 is not one),
    or once the system has been asking to slow down for ``THROTTLED_FOR`` seconds."""

    def __init__(self, attempts: int) -> None:
        self._attempts = attempts
        self._failures = 0

    def __call__(self, state: RetryCallState) -> bool:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, Transient) and error.throttled:
            return (state.seconds_since_start or 0.0) > THROTTLED_FOR
        self._failures += 1
        return self._failures >= self._attempts


_backoff = wait_exponential_jitter(multiplier=0.05, max=1.0)


def _wait(state: RetryCallState) -> float:
    """A 429's ``Retry-After`` (at most ``MAX_RETRY_AFTER``), else a short backoff with jitter."""
    error = state.outcome.exception() if state.outcome else None
    if isinstance(error, Transient) and error.throttled:
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
                 hosts: HostPolicy, limiter: Limiter | None = None, credentials: Credentials | None = None) -> None:
        self._client = client
        self._base = base_url.rstrip("/")
        self._timeout = timeout
        self._attempts = attempts
        self._hosts = hosts
        self._limiter = limiter
        self._credentials = credentials or NoCredentials()

    async def post(self, request: LedgerEntryRequest) -> LedgerReceipt:
        async def attempt(number: int) -> LedgerReceipt:
            # An answer may have been lost after the ledger committed: an earlier attempt of this call,
            # or an earlier call (the request says so, from the posting's row).
            if number > 1 or request.maybe_posted:
                found = await self._lookup(request)
                if found is not None:
                    return found
            return await self._post_once(request)

        return await self._retried(attempt)

    async def _retried(self, attempt: Callable[[int], Awaitable[T]]) -> T:
        """``attempt(n)`` for n = 1, 2, ... while it fails transiently, within the attempts' budget.

        A system paypost must not call fails INTEGRATION_NOT_CONFIGURED before any request; one
        that keeps asking to slow down goes back to its queue (``TransientFailure``, never FAILED);
        one that never answers raises ``LedgerUnreachable``: the payment waits for it
        (handlers/outages.py)."""
        try:
            await self._hosts.check(self._base)
        except RefusedHost as exc:
            raise LoadFailure(LoadErrorCode.INTEGRATION_NOT_CONFIGURED, f"Its system is refused: {exc}.") from exc
        try:
            async for tried in AsyncRetrying(retry=retry_if_exception_type(Transient), stop=_Budget(self._attempts),
                                             wait=_wait, reraise=True):
                with tried:
                    return await attempt(tried.retry_state.attempt_number)
        except Transient as exc:
            if exc.throttled:
                raise TransientFailure(f"the practice's system kept answering 429 for {THROTTLED_FOR:g}s") from exc
            raise LedgerUnreachable(f"no answer after {self._attempts} attempts; last error: {exc}") from exc
        raise AssertionError("unreachable")

    async def _call(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        response = await self._send(method, url, **kwargs)
        if response.status_code == 401 and self._credentials.refused():
            response = await self._send(method, url, **kwargs)  # with a token fetched anew
        if response.status_code == 401:
            raise LoadFailure(LoadErrorCode.INTEGRATION_NOT_CONFIGURED,
                              "The practice's system refused paypost's credentials (401).")
        return response

    async def _send(self, method: str, url: str, keep: tuple[int, ...] = (), **kwargs: Any) -> httpx.Response:
        if self._limiter is not None:
            await self._limiter.wait()
        headers = dict(kwargs.pop("headers", {}))
        if (authorization := await self._credentials.authorization()) is not None:
            headers["Authorization"] = authorization
        return await answer(self._client, "the ledger", method, url, within=self._timeout, headers=headers,
                            keep=keep, **kwargs)

    async def find_reference(self, manual_reference: str) -> tuple[str, Decimal] | Literal[False] | None:
        """The entry the system holds under a manual reference: (entry_id, amount); False if it holds
        none; None if it cannot say (no answer, or an answer paypost cannot read)."""
        try:
            response = await self._call("GET", f"{self._base}/entries/by-reference/{quote(manual_reference, safe='')}")
        except (TransientFailure, LoadFailure):
            return None
        if response.status_code == 404:
            return False
        try:
            body = response.json()
            return str(body["entry_id"]), Decimal(str(body["amount"]))
        except (ValueError, KeyError, TypeError, ArithmeticError):
            return None

    async def search_patients(self, query: str, limit: int) -> list[PatientMatch]:
        """``GET {base_url}/patients?q=&limit=`` (contract section 14): the system's matches.

        ``SearchNotOffered`` for 404 or 501; ``SystemUnreachable`` once its tries are spent (5xx,
        timeouts, 429 for longer than an office waits); ``SearchFailed`` for a refusal or an answer
        paypost cannot read. The query travels only in the request: no log line, no error names it."""
        async def attempt(_: int) -> httpx.Response:
            return await self._call("GET", f"{self._base}/patients", params={"q": query, "limit": str(limit)},
                                    keep=(501,))

        try:
            response = await self._retried(attempt)
        except LoadFailure as exc:  # a refused host, credentials it cannot open or that are refused
            raise SearchFailed(f"The practice's system could not be asked: {exc.detail or exc.code.value}") from exc
        except TransientFailure as exc:
            raise SystemUnreachable(f"The practice's system did not answer the search ({loggable(exc)}).") from exc
        if response.status_code in (404, 501):
            raise SearchNotOffered("The practice's system offers no patient search.")
        if response.status_code != 200:
            raise SearchFailed(f"The practice's system refused the search ({response.status_code}).")
        try:
            answer = response.json()
        except ValueError as exc:
            raise SearchFailed("The practice's system answered the search with something other than JSON.") from exc
        return matches(answer, limit)

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
                # (1.2) what the entry is, and a reversal's own id (contract section 10)
                "kind": request.kind, "reversal_id": request.reversal_id,
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
        raise LoadFailure(LoadErrorCode.LEDGER_REJECTED, f"The ledger said: {reason(response)}")


    # Office tasks and patient flags (contract section 7): the AlertSystem port.

    async def put_task(self, alert: Alert) -> None:
        body = TaskBody(alert_id=alert.alert_id, practice_id=alert.practice_id, payment_id=alert.payment_id,
                        title=alert.title or "paypost: a payment did not load", detail=alert.detail or "",
                        opened_at=alert.opened_at, escalated=alert.state is AlertState.ESCALATED)
        await self._alert_call("PUT", f"/tasks/{quote(alert.alert_id, safe='')}", body.model_dump(mode="json"))

    async def delete_task(self, alert_id: str) -> None:
        await self._alert_call("DELETE", f"/tasks/{quote(alert_id, safe='')}")

    async def put_flag(self, patient_id: str, alert: Alert) -> None:
        assert alert.patient_account_id is not None  # a patient flag is an account's
        body = FlagBody(alert_id=alert.alert_id, practice_id=alert.practice_id,
                        patient_account_id=alert.patient_account_id,
                        title=alert.title or "paypost: a payment of this patient did not load",
                        detail=alert.detail or "", opened_at=alert.opened_at)
        await self._alert_call("PUT", _flag_path(patient_id, alert.alert_id), body.model_dump(mode="json"))

    async def delete_flag(self, patient_id: str, alert_id: str) -> None:
        await self._alert_call("DELETE", _flag_path(patient_id, alert_id))

    async def _alert_call(self, method: str, path: str, body: dict[str, Any] | None = None) -> None:
        """PUT or DELETE an alert, idempotent: retried like an entry; a 404 on DELETE is gone already."""
        async def attempt(_: int) -> httpx.Response:
            return await self._call(method, f"{self._base}{path}", **({"json": body} if body is not None else {}))

        response = await self._retried(attempt)
        if response.is_success or (method == "DELETE" and response.status_code == 404):
            return
        raise LoadFailure(LoadErrorCode.LEDGER_REJECTED, f"The system refused {method} {path}: {reason(response)}")

def _flag_path(patient_id: str, alert_id: str) -> str:
    return f"/patients/{quote(patient_id, safe='')}/flags/{quote(alert_id, safe='')}"


class _Unopened:
    """Credentials paypost holds sealed but has no key to open (PAYPOST_SECRET_KEY unset since)."""

    async def authorization(self) -> str | None:
        raise LoadFailure(LoadErrorCode.INTEGRATION_NOT_CONFIGURED,
                          "paypost has no PAYPOST_SECRET_KEY to open the practice's credentials with.")

    def refused(self) -> bool:
        return False


class HttpLedgers:
    """Builds the HTTP ledger of each practice over one shared connection pool."""

    def __init__(self, attempts: int, default_timeout: float, *, hosts: HostPolicy | None = None,
                 secrets: SecretBox | None = None) -> None:
        self._client = httpx.AsyncClient(follow_redirects=False)
        self._attempts = attempts
        self._timeout = default_timeout
        self._hosts = hosts or HostPolicy()  # none allowed beyond the rule: https, public addresses
        self._secrets = secrets
        self._limiters: dict[tuple[str, float], Limiter] = {}
        self._tokens: dict[tuple[str, str, str], ClientCredentials] = {}

    def alerts_for(self, integration: Integration) -> HttpLedger | None:
        """The system for the practice's tasks and flags, unless its integration says ``tasks: false``."""
        if integration.kind != "http" or integration.settings.get("tasks") is False:
            return None
        return self.for_integration(integration)

    def for_integration(self, integration: Integration) -> HttpLedger:
        base_url = str(integration.settings.get("base_url", ""))
        setting = integration.settings.get("timeout_seconds", self._timeout)
        timeout = float(setting) if isinstance(setting, (int, float, str)) else self._timeout
        rate = integration.settings.get("max_requests_per_second")
        limiter = None
        if isinstance(rate, (int, float)) and rate > 0:
            # One limiter per system and rate, shared by every ledger built for it.
            limiter = self._limiters.setdefault((base_url, float(rate)), Limiter(float(rate)))
        return HttpLedger(self._client, base_url, timeout, self._attempts, self._hosts, limiter,
                          self._credentials(integration.settings.get("auth"), timeout))

    def _credentials(self, auth: object, timeout: float) -> Credentials:
        """The integration's credentials, its secret opened here, at the last moment."""
        if not isinstance(auth, dict):
            return NoCredentials()
        sealed = auth.get(SEALED)
        if not isinstance(sealed, str):
            return NoCredentials()
        if self._secrets is None:
            return _Unopened()
        secret = self._secrets.open(sealed)
        if auth.get("kind") == "bearer":
            return BearerToken(secret)
        key = (str(auth.get("token_url")), str(auth.get("client_id")), sealed)
        if key not in self._tokens:  # one cached token per system, client and secret
            scope = auth.get("scope")
            self._tokens[key] = ClientCredentials(self._client, self._hosts, key[0], key[1], secret,
                                                  scope if isinstance(scope, str) else None, timeout)
        return self._tokens[key]

    async def close(self) -> None:
        await self._client.aclose()


class LedgerEvidence:
    """The ClearEvidence port: asks the practice's system (an ``http`` integration) about a manual entry."""

    def __init__(self, directory: PracticeDirectory, ledgers: HttpLedgers) -> None:
        self._directory = directory
        self._ledgers = ledgers

    async def verify(self, practice_id: str, manual_reference: str, amount: Decimal | None) -> bool | None:
        integration = await self._directory.integration(practice_id)
        if integration is None or integration.kind != "http" or not integration.enabled:
            return None  # the built-in ledger keeps no manual entries: nothing to check against
        try:
            found = await self._ledgers.for_integration(integration).find_reference(manual_reference)
        except LoadFailure:
            return None  # credentials it cannot open, a refused host: it cannot say
        if found is None or found is False:
            return found
        _, held = found
        return amount is None or held == amount
