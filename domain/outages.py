"""A practice's system that does not answer: its payments wait, then are HELD, then load by themselves.

Contract section 7. A practice's system is healthy, failing or held:

- **healthy**: payments go to it as they arrive.
- **failing**: a payment got no answer after paypost's own attempts (``LedgerUnreachable``). From then
  on the practice's payments are *parked* as they arrive (in flight, their deliveries settled, so no
  shared queue waits behind one practice) and one payment at a time is tried again, soon, then less
  often. The first that reaches the system ends the failure and the parked ones load in the order
  received.
- **held**: failing for ``hold_after`` seconds without one answer. Parked payments become ``HELD``
  (nobody has to act), one office task says the system is unreachable, and one payment is tried
  every ``probe_every`` seconds. An operator may hold a practice by hand too: then nothing is tried
  until they release it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

# While failing (not held yet), the first payment is tried again after this, then twice as long
# each time, up to RETRY_AT_MOST or the probe interval, whichever is less.
RETRY_FIRST = 0.25
RETRY_AT_MOST = 5.0


class Health(enum.StrEnum):
    FAILING = "failing"
    HELD = "held"


@dataclass(frozen=True, slots=True)
class PracticeOutage:
    """A practice whose system is not healthy (a healthy one has none)."""

    practice_id: str
    health: Health
    failing_since: datetime | None  # None for a hold by hand whose system never failed
    last_error: str | None
    tries: int  # payments tried since it started failing, none of which got an answer
    probe_at: datetime | None  # when the next payment is tried (None: not before a release by hand)
    held_since: datetime | None = None
    reason: str | None = None  # a hold's reason, as the office reads it
    held_by: str | None = None  # the operator of a hold by hand; None when paypost held it
    task_id: str | None = None  # the office task that says so (a hold paypost made)

    @property
    def by_hand(self) -> bool:
        return self.health is Health.HELD and self.held_by is not None

    @property
    def holds(self) -> bool:
        """Whether its parked payments are HELD (rather than in flight, waiting for a retry)."""
        return self.health is Health.HELD


def should_hold(outage: PracticeOutage, now: datetime, hold_after: float) -> bool:
    """A failing system that has not answered one payment for ``hold_after`` seconds is held."""
    return (outage.health is Health.FAILING and outage.failing_since is not None
            and (now - outage.failing_since).total_seconds() >= hold_after)


def next_try(outage: PracticeOutage, now: datetime, probe_every: float) -> datetime:
    """When a failing or held system is next tried with one payment."""
    if outage.health is Health.HELD:
        return now + timedelta(seconds=probe_every)
    wait = min(RETRY_FIRST * 2 ** max(outage.tries - 1, 0), RETRY_AT_MOST, probe_every)
    return now + timedelta(seconds=wait)


def outage_task_id(practice_id: str, held_since: datetime) -> str:
    """One office task per hold: its id is the practice's and the hold's start."""
    return f"outage:{practice_id}:{held_since.strftime('%Y%m%dT%H%M%S.%fZ')}"


def unreachable_reason(last_error: str | None, hold_after: float) -> str:
    said = f" Last error: {last_error}" if last_error else ""
    return (f"The practice-management system has not answered for {hold_after:g} seconds; its payments "
            f"are held and load by themselves when it answers again.{said}")
