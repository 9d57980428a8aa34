"""Domain events: what happened to a posting, once it is durable.

The services publish them to the message bus (``handlers/messagebus.py``); what follows each one
(the event for dashboards, alerts, self-healing, reconciliation) is subscribed to it by the
composition root, in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

from paypost.domain.posting import AuditEntry, Posting


@dataclass(frozen=True, slots=True)
class PostingLoaded:
    """A payment or refund was loaded into its ledger."""

    posting: Posting
    had_failed: bool  # it was sent back after failing: its alerts resolve


@dataclass(frozen=True, slots=True)
class PostingFailed:
    """A load failed (or a message could not be read) for a reason a person must act on."""

    posting: Posting


@dataclass(frozen=True, slots=True)
class PostingRetried:
    """A failed posting was sent back for loading: by an operator, an upstream correction, or paypost."""

    posting: Posting
    audit: AuditEntry


@dataclass(frozen=True, slots=True)
class PostingCleared:
    """An operator marked a failed posting reviewed and posted by hand."""

    posting: Posting
    audit: AuditEntry


@dataclass(frozen=True, slots=True)
class PostingHeld:
    """A payment waits, HELD, because its practice's system is unreachable (``paypost.domain.outages``)."""

    posting: Posting


Event = PostingLoaded | PostingFailed | PostingRetried | PostingCleared | PostingHeld


def owed_as(event: Event) -> str | None:
    """How an outcome's event is noted as owed on its posting; None for an event that is not an
    outcome's (a retry's, a clear's: their operation is simply run again)."""
    if isinstance(event, PostingFailed):
        return "failed"
    if isinstance(event, PostingLoaded):
        return "loaded_after_failure" if event.had_failed else "loaded"
    return None


def owed_event(posting: Posting) -> Event | None:
    """The event a posting still owes (its ``announcement_owed``), rebuilt from the posting."""
    match posting.announcement_owed:
        case "failed":
            return PostingFailed(posting)
        case "loaded" | "loaded_after_failure":
            return PostingLoaded(posting, had_failed=posting.announcement_owed == "loaded_after_failure")
    return None
