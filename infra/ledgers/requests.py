"""One request to a practice's system: a client span with its ``traceparent``, counted by part and
status class, and what may pass by itself (a timeout, a refused connection, 429, 5xx) raised as
``Transient``."""

from __future__ import annotations

import time
from typing import Any

import httpx

from paypost.domain.errors import TransientFailure
from paypost.handlers import metrics
from paypost.infra.runtime import tracing


class Transient(TransientFailure):
    def __init__(self, message: str, retry_after: float | None = None, throttled: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.throttled = throttled


def reason(response: httpx.Response) -> str:
    try:
        body: Any = response.json()
        message = body.get("error", {}).get("message") if isinstance(body, dict) else None
    except ValueError:
        message = None
    text = str(message or response.text or response.reason_phrase)
    return text[:300]


def retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (an HTTP date is not used by the protocol; it is read as absent)."""
    value = response.headers.get("retry-after", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


async def answer(client: httpx.AsyncClient, who: str, method: str, url: str, *, within: float,
                 keep: tuple[int, ...] = (), **kwargs: Any) -> httpx.Response:
    """One request to the practice's system (``who`` names the part for the office): what may pass by
    itself (a timeout, a refused connection, 429, 5xx) is raised as transient; any other answer returned,
    and a status in ``keep`` too (a search's 501: the system has none, which no retry changes).

    Each request is a client span carrying its ``traceparent`` (``infra/runtime/tracing.py``) and is
    counted by part and status class (``handlers/metrics.py``: no practice label)."""
    part = "token" if who == "the token endpoint" else "ledger"
    headers: dict[str, str] = dict(kwargs.pop("headers", None) or {})
    started = time.perf_counter()
    status: int | None = None
    timed_out = False
    try:
        with tracing.client_span(method, url, headers, server=_server(url)) as span:
            try:
                response = await client.request(method, url, timeout=within, headers=headers, **kwargs)
            except httpx.TimeoutException as exc:
                timed_out = True
                raise Transient(f"{who} did not answer within {within:g}s") from exc
            except httpx.TransportError as exc:
                raise Transient(f"{who} could not be reached ({type(exc).__name__})") from exc
            status = response.status_code
            tracing.answered(span, status)
    finally:
        metrics.practice_system_request(part, status, time.perf_counter() - started, timed_out=timed_out)
    if response.status_code == 429:
        raise Transient(f"{who} answered 429", retry_after=retry_after(response), throttled=True)
    if response.status_code >= 500 and response.status_code not in keep:
        raise Transient(f"{who} answered {response.status_code}")
    return response


def _server(url: str) -> tuple[str, int | None] | None:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return None
    return (parsed.host, parsed.port) if parsed.host else None
