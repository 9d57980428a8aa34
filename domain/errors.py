"""Named errors of the posting domain."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from paypost.domain.load_errors import LoadErrorCode


class PaypostError(Exception):
    """Base of paypost's own errors."""


class IllegalTransition(PaypostError):
    """A load status change that the posting life cycle does not allow."""

    def __init__(self, current: str, target: str) -> None:
        super().__init__(f"a {current} posting cannot become {target}")
        self.current = current
        self.target = target


class LoadFailure(PaypostError):
    """A load failed for a reason only a person can fix: it becomes a FAILED posting."""

    def __init__(self, code: LoadErrorCode, detail: str | None = None) -> None:
        super().__init__(f"{code.value}: {detail}" if detail else code.value)
        self.code = code
        self.detail = detail


def loggable(error: BaseException) -> str:
    """What a log line may say of ``error``: a Load Error's code (its detail may quote the practice's
    system or name the patient), a transient failure's own words (paypost's: a system that did not
    answer), else only the error's type."""
    if isinstance(error, LoadFailure):
        return error.code.value
    if isinstance(error, TransientFailure):
        return f"{type(error).__name__}: {str(error)[:200]}"
    return type(error).__name__


class TransientFailure(PaypostError):
    """A failure that may pass by itself (a ledger or database that does not answer).

    It is retried with backoff and never turned into a FAILED posting straight away.
    """


class UnconfirmedWrite(TransientFailure):
    """The database applied a write but did not confirm its write concern (a majority did not have
    it in time, or the primary stepped down under it): it may be kept or rolled back. Its delivery
    is handled again: the row is then found (kept) or written anew (rolled back)."""


class LedgerUnreachable(TransientFailure):
    """A practice's system did not answer after paypost's attempts (5xx, timeouts, refused
    connections): its payments wait for it (contract section 7, outages), never FAILED for it."""


class BadCursor(PaypostError, ValueError):
    """A report cursor that paypost did not hand out."""


class RefusedHost(PaypostError, ValueError):
    """A practice-management URL paypost must not call (contract section 7); the message names the rule."""


class Unroutable(PaypostError):
    """The broker routed a message paypost sent to no queue (a missing binding or queue)."""


class ServiceError(RuntimeError):
    """A service paypost runs or asks (a local server, the broker's CLI) did not do what was asked.

    The message says what to do."""
