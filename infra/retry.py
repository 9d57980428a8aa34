"""Retries for what is named as transient, with backoff, jitter and a cap on total time."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_delay, wait_exponential_jitter

from domain.errors import TransientFailure
from infra.mongo import TRANSIENT_DB_ERRORS

T = TypeVar("T")
log = structlog.get_logger("paypost.retry")

TRANSIENT = (TransientFailure, *TRANSIENT_DB_ERRORS)


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    log.warning("transient_failure_retrying", attempt=state.attempt_number,
                error=type(error).__name__ if error else None)


def make_retrying(max_seconds: float = 60.0, initial: float = 0.05, max_wait: float = 5.0
                  ) -> Callable[[Callable[[], Awaitable[T]]], Awaitable[T]]:
    """Run a zero-argument coroutine function again while it fails transiently.

    After ``max_seconds`` the last error is raised; the caller returns the delivery to its queue.
    """

    async def retrying(fn: Callable[[], Awaitable[T]]) -> T:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(TRANSIENT),
            wait=wait_exponential_jitter(multiplier=initial, max=max_wait),
            stop=stop_after_delay(max_seconds),
            before_sleep=_log_retry,
            reraise=True,
        ):
            with attempt:
                return await fn()
        raise AssertionError("unreachable")

    return retrying
