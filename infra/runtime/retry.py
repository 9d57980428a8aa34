"""Retries for what is named as transient, with backoff, jitter and a cap on total time."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog
from pymongo.errors import OperationFailure
from structlog.typing import FilteringBoundLogger
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_delay, wait_exponential_jitter

from paypost.domain.errors import TransientFailure
from paypost.infra.mongo.database import TRANSIENT_DB_ERRORS

T = TypeVar("T")
log = structlog.get_logger("paypost.retry")

TRANSIENT: tuple[type[BaseException], ...] = (TransientFailure, *TRANSIENT_DB_ERRORS)

# A replica set changing its primary answers a write in progress with one of these codes (a
# WriteConcernError 11602 InterruptedDueToReplStateChange, say, for an update_many, which the
# driver does not retry by itself): the write is worth trying again on the new primary.
REPL_STATE_CHANGE_CODES = frozenset({
    91,     # ShutdownInProgress
    189,    # PrimarySteppedDown
    10107,  # NotWritablePrimary
    11600,  # InterruptedAtShutdown
    11602,  # InterruptedDueToReplStateChange
    13435,  # NotPrimaryNoSecondaryOk
    13436,  # NotPrimaryOrSecondary
})


def is_transient(error: BaseException) -> bool:
    """A failure worth trying again: a broker or database that did not answer, or a primary that
    stepped down under the write."""
    return isinstance(error, TRANSIENT) or (
        isinstance(error, OperationFailure) and error.code in REPL_STATE_CHANGE_CODES)


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
            retry=retry_if_exception(is_transient),
            wait=wait_exponential_jitter(multiplier=initial, max=max_wait),
            stop=stop_after_delay(max_seconds),
            before_sleep=_log_retry,
            reraise=True,
        ):
            with attempt:
                return await fn()
        raise AssertionError("unreachable")

    return retrying


def log_failure(logger: FilteringBoundLogger, event: str, error: BaseException, **fields: Any) -> None:
    """Log a failure of background work. A broker or database that did not answer is an outage,
    said in one line each time (the work is tried again); anything else comes with its traceback."""
    if is_transient(error):
        first = str(error).splitlines()[0][:200] if str(error) else ""
        logger.warning(event, error=f"{type(error).__name__}: {first}", service_unavailable=True, **fields)
    else:
        logger.error(event, exc_info=error, **fields)
