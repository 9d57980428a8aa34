"""Save Changes operations (contract section 8): the items an operation names, and its canary.

A canary's phases: it *waits* for the outcomes of its first retries; a process that decides claims
the verdict (*proceeding* or *stopping*) in one conditional write, carries it out, and the canary
ends *proceeded* or *stopped*. A claim whose process stopped before carrying it out goes stale and
is claimed again, from the same phase.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime


class CanaryPhase(enum.StrEnum):
    WAITING = "waiting"
    PROCEEDING = "proceeding"
    STOPPING = "stopping"
    PROCEEDED = "proceeded"
    STOPPED = "stopped"


# A verdict claimed (to be carried out) and the phase it ends in once it is.
CARRIED_OUT: Mapping[CanaryPhase, CanaryPhase] = {
    CanaryPhase.PROCEEDING: CanaryPhase.PROCEEDED,
    CanaryPhase.STOPPING: CanaryPhase.STOPPED,
}
CLAIMED = frozenset(CARRIED_OUT)


def verdict_phase(proceed: bool) -> CanaryPhase:
    """The phase a verdict is claimed in."""
    return CanaryPhase.PROCEEDING if proceed else CanaryPhase.STOPPING


@dataclass(frozen=True, slots=True)
class OperationItem:
    """One payment an operation names, and what is done to it: ``retry`` or ``clear``."""

    payment_id: str
    action: str


@dataclass(frozen=True, slots=True)
class ClearOrder:
    """One payment to clear, with the office's reason and the reference of the entry made by hand."""

    payment_id: str
    reason: str = ""
    manual_reference: str | None = None


@dataclass(frozen=True, slots=True)
class CanaryPlan:
    """A canary as Save Changes sets it: its first retries, the rest that follows them, and until when
    the outcomes of the first may take."""

    payment_ids: tuple[str, ...]
    rest_retry: tuple[str, ...]
    rest_clear: tuple[ClearOrder, ...]
    deadline: datetime

    @property
    def size(self) -> int:
        return len(self.payment_ids)


@dataclass(frozen=True, slots=True)
class Canary:
    """An operation's canary as a sweep finds it: its plan, and where it stands."""

    operation_id: str
    practice_id: str
    actor: str
    plan: CanaryPlan
    phase: CanaryPhase
    message: str | None = None  # the verdict's reason, once claimed
