"""Save Changes: one operation for the whole selection, applied by commands on the broker.

A selection names payments, or failure groups (``paypost.domain.triage``) that stand for the FAILED
postings they hold at the time of the call. A dry run says what each item would become and changes
nothing. A canary sends the first k retries alone; the rest follow once every one of them loaded
(``handlers/canary.py`` decides that, from the database, in whichever process sweeps first).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import structlog

from paypost.domain.errors import PaypostError
from paypost.domain.operations import CanaryPlan, ClearOrder, OperationItem
from paypost.domain.ports.events import Publish
from paypost.domain.ports.operations import OperationStore
from paypost.domain.ports.postings import FailedSelection, PostingCommands
from paypost.domain.posting import PostingKey
from paypost.domain.rules import ItemResult
from paypost.domain.triage import would_clear, would_retry
from paypost.handlers.clock import Clock, utc_now
from paypost.producers.commands import publish_commands
from paypost.schemas.messages import ClearItem

log = structlog.get_logger("paypost.changes")

MAX_ITEMS = 50_000  # items of one Save Changes, its groups' postings included
CANARY_WAIT_SECONDS = 300.0  # a canary whose outcomes take longer stops the operation


class EmptySelection(PaypostError, ValueError):
    """A Save Changes that selects nothing."""


class MissingReason(PaypostError, ValueError):
    """A clear without a non-empty reason: the whole Save Changes is refused."""


class UnknownGroup(PaypostError, ValueError):
    """A failure group that holds no FAILED posting of the practice now (resolved, or never one)."""


class SelectionTooLarge(PaypostError, ValueError):
    """More items than one Save Changes takes."""


class InvalidCanary(PaypostError, ValueError):
    """A canary that cannot be run (no retry to send first)."""


@dataclass(frozen=True, slots=True)
class GroupClear:
    """Clear every FAILED posting of a failure group, with one reason."""

    group_id: str
    reason: str
    manual_reference: str | None = None


@dataclass(frozen=True, slots=True)
class Selection:
    """What a Save Changes names: payments and failure groups, and a canary size (or None)."""

    retry: Sequence[str] = ()
    clear: Sequence[ClearItem] = ()
    retry_groups: Sequence[str] = ()
    clear_groups: Sequence[GroupClear] = ()
    canary: int | None = None


@dataclass(slots=True)
class Expanded:
    """A selection with its groups expanded into payments, each once."""

    retry: list[str] = field(default_factory=list)
    clear: list[ClearItem] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.retry) + len(self.clear)


class SaveChanges:
    """What the console's button, the API and the CLI call (they publish nothing themselves)."""

    def __init__(self, publish: Publish, operations: OperationStore, postings: PostingCommands,
                 clock: Clock = utc_now, on_canary: Callable[[], None] | None = None) -> None:
        self._publish = publish
        self._operations = operations
        self._postings = postings
        self._clock = clock
        self._on_canary = on_canary  # the canaries' sweep, woken for the canary just made

    async def expand(self, practice_id: str, selection: Selection) -> Expanded:
        """The payments a selection stands for now; raises the named errors above, changing nothing."""
        missing = [c.payment_id for c in selection.clear if not c.reason.strip()] + \
                  [g.group_id for g in selection.clear_groups if not g.reason.strip()]
        if missing:
            raise MissingReason(f"clear needs a non-empty reason (missing for {', '.join(missing[:5])})")
        expanded = Expanded(retry=list(selection.retry), clear=list(selection.clear))
        for group_id in dict.fromkeys(selection.retry_groups):
            expanded.retry += await self._group(practice_id, group_id)
        for group in selection.clear_groups:
            expanded.clear += [ClearItem(payment_id=p, reason=group.reason, manual_reference=group.manual_reference)
                               for p in await self._group(practice_id, group.group_id)]
        expanded.retry = list(dict.fromkeys(expanded.retry))
        expanded.clear = list({c.payment_id: c for c in reversed(expanded.clear)}.values())[::-1]  # first wins
        if not expanded.total:
            raise EmptySelection("select at least one payment or failure group to retry or clear")
        if expanded.total > MAX_ITEMS:
            raise SelectionTooLarge(f"{expanded.total} items selected; one Save Changes takes at most {MAX_ITEMS}")
        if selection.canary is not None and not expanded.retry:
            raise InvalidCanary("a canary replays the first retries: select at least one payment to retry")
        return expanded

    async def _group(self, practice_id: str, group_id: str) -> list[str]:
        keys = await self._postings.failed_keys(FailedSelection(practice_id, group_id=group_id), limit=MAX_ITEMS + 1)
        if not keys:
            raise UnknownGroup(f"failure group {group_id} holds no FAILED posting of practice {practice_id} now "
                               "(resolved since, or not one of its groups): reload the groups")
        return [k.payment_id for k in keys]

    async def preview(self, practice_id: str, selection: Selection) -> list[ItemResult]:
        """A dry run: what each item would become now, in the operation's words. Changes nothing."""
        expanded = await self.expand(practice_id, selection)
        ids = list(dict.fromkeys([*expanded.retry, *(c.payment_id for c in expanded.clear)]))
        states = {}
        for start in range(0, len(ids), 1000):
            states.update(await self._postings.states([PostingKey(practice_id, p) for p in ids[start:start + 1000]]))
        return ([would_retry(states.get(PostingKey(practice_id, p)), p, practice_id) for p in expanded.retry]
                + [would_clear(states.get(PostingKey(practice_id, c.payment_id)), c.payment_id, practice_id)
                   for c in expanded.clear])

    async def cancel(self, operation_id: str, operator: str) -> bool:
        """Stop a running operation: the worker replaying it stops before its next chunk, what it has not
        replayed stays FAILED. Recorded on the operation (by whom, when); False if it was cancelled already."""
        cancelled = await self._operations.cancel(operation_id, operator, self._clock())
        if cancelled:
            log.info("operation_cancelled", operation_id=operation_id, actor=operator)
        return cancelled

    async def __call__(self, practice_id: str, retry: Sequence[str], clear: Sequence[ClearItem],
                       operator: str, selection: Selection | None = None) -> str:
        """Record one operation for the whole selection and publish its commands; returns its id.

        ``retry`` and ``clear`` name payments; ``selection`` adds groups and a canary. Nothing is
        recorded or published when a clear lacks a reason or a group holds nothing.
        """
        chosen = selection or Selection()
        chosen = Selection(retry=[*retry, *chosen.retry], clear=[*clear, *chosen.clear],
                           retry_groups=chosen.retry_groups, clear_groups=chosen.clear_groups, canary=chosen.canary)
        expanded = await self.expand(practice_id, chosen)
        operation_id = str(uuid.uuid4())
        now = self._clock()
        items = [OperationItem(p, "retry") for p in expanded.retry] + \
                [OperationItem(c.payment_id, "clear") for c in expanded.clear]
        retry_now, clear_now, canary = expanded.retry, expanded.clear, None
        if chosen.canary is not None:
            first = expanded.retry[:chosen.canary]
            canary = CanaryPlan(payment_ids=tuple(first), rest_retry=tuple(expanded.retry[len(first):]),
                                rest_clear=tuple(ClearOrder(c.payment_id, c.reason, c.manual_reference)
                                                 for c in expanded.clear),
                                deadline=now + timedelta(seconds=CANARY_WAIT_SECONDS))
            retry_now, clear_now = first, []
        await self._operations.create(operation_id, practice_id, operator, items, now, canary)
        if canary is not None and self._on_canary is not None:
            self._on_canary()
        try:
            await publish_commands(self._publish, operation_id, practice_id, retry_now, clear_now, operator, now)
        except Exception:
            # An operation whose commands did not all go out must not look pending for ever.
            await self._operations.discard(operation_id)
            raise
        return operation_id
