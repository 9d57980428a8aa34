"""The dead-letter queue's consumer: every dead-lettered message ends as a FAILED posting."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog

from paypost.domain.load_errors import LoadErrorCode
from paypost.domain.model import IN_FLIGHT
from paypost.domain.ports.postings import PostingStore
from paypost.domain.posting import PAYPOST_ACTOR, UNKNOWN_PRACTICE, AuditEntry, KeptMessage, PostingKey
from paypost.handlers.clock import Clock, utc_now
from paypost.handlers.outcomes import OutcomeRecorder
from paypost.handlers.posting import POSTING_MESSAGES, PostingService, posting_from, posts_nothing
from paypost.schemas.reading import Unreadable, assigned_id, read_message

log = structlog.get_logger("paypost.dead_letters")


@dataclass(frozen=True, slots=True)
class Death:
    """Why and where the broker dead-lettered a message (from its ``x-death`` header)."""

    reason: str  # "rejected", "delivery_limit", "expired", "maxlen"
    queue: str
    count: int


def death_of(headers: dict[str, Any]) -> Death:
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        first = deaths[0]
        return Death(
            reason=str(first.get("reason", "unknown")),
            queue=str(first.get("queue", "")),
            count=int(first.get("count", 1) or 1),
        )
    return Death(reason=str(headers.get("x-first-death-reason", "unknown")),
                 queue=str(headers.get("x-first-death-queue", "")), count=1)


class DeadLetterService:
    """Keeps each dead-lettered message with its FAILED posting, once per dead-lettering."""

    def __init__(self, postings: PostingStore, service: PostingService, outcomes: OutcomeRecorder,
                 max_message_bytes: int, clock: Clock = utc_now) -> None:
        self._postings = postings
        self._service = service
        self._outcomes = outcomes
        self._max_bytes = max_message_bytes
        self._clock = clock

    async def handle(self, message: KeptMessage, raw_headers: dict[str, Any]) -> PostingKey:
        death = death_of(raw_headers)
        now = self._clock()
        marker = f"{message.message_id or assigned_id(message)}:{death.queue}:{death.reason}:{death.count}"
        audit = AuditEntry(at=now, actor=PAYPOST_ACTOR, action="dead_lettered",
                           reason=death.reason, detail=marker)
        # The dead-letter queue gets every kind of message: each is read by its routing key.
        read = read_message(message, self._max_bytes)
        if not isinstance(read, POSTING_MESSAGES) or posts_nothing(read):
            if not isinstance(read, Unreadable):
                # A readable mapping, transfer or command that its consumer could not apply.
                read = Unreadable(
                    code=LoadErrorCode.INVALID_MESSAGE,
                    detail=f"paypost could not apply this {message.routing_key} message "
                    f"({death.reason} after {death.count} deliveries).",
                    practice_id=getattr(read, "practice_id", UNKNOWN_PRACTICE),
                    row_id=message.message_id or assigned_id(message),
                )
            key = (await self._service.keep_unreadable(read, message)).key
        else:
            fresh = posting_from(read, now)
            key = fresh.key
            existing = await self._postings.get(key)
            if existing is None:
                # Dead-lettered before paypost wrote anything (a consumer that kept crashing on it).
                received = AuditEntry(at=now, actor=PAYPOST_ACTOR, action="received",
                                      detail=f"event {read.event_id} from the dead-letter queue")
                await self._postings.insert_received(fresh, message, received)
            # "rejected" means paypost itself wrote the outcome and then dead-lettered the message:
            # the posting may have moved on since (a retry in flight) and must be left alone. Any
            # other reason (delivery_limit) means no outcome was written: it becomes FAILED so a
            # person sees it (or, handled again, what that failure could not announce is now).
            if death.reason != "rejected" and (existing is None or existing.load_status in IN_FLIGHT
                                               or self._outcomes.owes(existing)):
                await self._service.fail_unfinished(
                    existing or fresh,
                    f"paypost could not finish loading it ({death.reason} after {death.count} deliveries).", now)
        if await self._postings.mark_dead_lettered(key, marker, audit):
            log.info("dead_letter_kept", posting=str(key), reason=death.reason, queue=death.queue)
        return key
