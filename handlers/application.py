"""What the entrypoints call: every handler an HTTP route or a CLI command needs, in one value.

The composition root builds it; the HTTP API and the CLI hold only this (never a collection, a
driver or the composition root itself).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from paypost.domain.access import Principal
from paypost.domain.access_trail import Via
from paypost.domain.ports.events import EventFeed
from paypost.domain.ports.maintenance import Readiness
from paypost.handlers.access_trail import AccessTrail
from paypost.handlers.changes import SaveChanges
from paypost.handlers.keys import ApiKeys
from paypost.handlers.mappings import MappingService
from paypost.handlers.month_end import MonthEnd
from paypost.handlers.practices import Practices
from paypost.handlers.reports import Reports
from paypost.handlers.retention import RetentionService
from paypost.handlers.tenancy import ScopedApplication
from paypost.handlers.triage import Triage


@dataclass(frozen=True, slots=True)
class Application:
    practices: Practices
    mappings: MappingService
    save_changes: SaveChanges
    reports: Reports
    feed: EventFeed
    readiness: Readiness
    refresh_metrics: Callable[[], Awaitable[object]]  # queue depths into the gauges, per scrape
    keys: ApiKeys
    triage: Triage
    access: AccessTrail  # contract section 12: who was shown what
    retention: RetentionService
    month_end: MonthEnd | None = None  # deposits and the close of a month (contract section 11)

    def for_principal(self, who: Principal, via: Via | None = None) -> ScopedApplication:
        """The handlers as ``who`` may use them: only its practices, only what its role allows;
        ``via``: the caller's address and the route, for the access trail."""
        return ScopedApplication(who, self.practices, self.mappings, self.save_changes, self.reports, self.feed,
                                 self.keys, self.triage, self.access, self.retention, via or Via(),
                                 month_end=self.month_end)
