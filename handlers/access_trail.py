"""The access trail (contract section 12): every answer that showed patients' payments, recorded.

An entrypoint tells ``ScopedAccess`` (``ScopedApplication.access``) what it showed, as the rows it
answers with; an entry per practice shown is handed to the store, which writes it off the request's
path. Reading the trail is for admins, within their scope.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from paypost.domain.access import AccessDenied, Principal
from paypost.domain.access_trail import LISTED_IDS_MAX, AccessQuery, Action, Via, access_entry
from paypost.domain.ports import Record
from paypost.domain.ports.patient_data import AccessEntries


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Seen:
    """What one answer showed of one practice: its payment ids (up to one more than are listed) and count."""

    payment_ids: list[str] = field(default_factory=list)
    accounts: set[str] = field(default_factory=set)
    count: int = 0

    def add(self, row: Mapping[str, Any]) -> None:
        self.count += 1
        if len(self.payment_ids) <= LISTED_IDS_MAX and isinstance(row.get("payment_id"), str):
            self.payment_ids.append(row["payment_id"])
        account = row.get("patient_account_id")
        if isinstance(account, str) and len(self.accounts) <= LISTED_IDS_MAX:
            self.accounts.add(account)


class AccessTrail:
    def __init__(self, entries: AccessEntries, clock: Callable[[], datetime] = _now) -> None:
        self._entries = entries
        self._clock = clock

    def shown(self, who: Principal, via: Via, action: Action, rows: Sequence[Mapping[str, Any]],
              practice_id: str | None, filters: Mapping[str, str]) -> None:
        """Record that ``who`` was shown ``rows`` (each with its ``practice_id``, ``payment_id`` and
        ``patient_account_id`` where it has them): one entry per practice, one for none shown."""
        seen: dict[str | None, _Seen] = {}
        for row in rows:
            practice = row.get("practice_id")
            seen.setdefault(practice if isinstance(practice, str) else practice_id, _Seen()).add(row)
        self._record(who, via, action, seen or {practice_id: _Seen()}, filters)

    async def exported(self, who: Principal, via: Via, rows: AsyncIterator[Record], practice_id: str | None,
                       filters: Mapping[str, str]) -> AsyncGenerator[Record, None]:
        """``rows`` as they stream out, recorded once the export ends (or is cut off: what was sent)."""
        seen: dict[str | None, _Seen] = {}
        try:
            async for row in rows:
                practice = row.get("practice_id")
                seen.setdefault(practice if isinstance(practice, str) else practice_id, _Seen()).add(row)
                yield row
        finally:
            self._record(who, via, "export", seen or {practice_id: _Seen()}, filters)

    def _record(self, who: Principal, via: Via, action: Action, seen: Mapping[str | None, _Seen],
                filters: Mapping[str, str]) -> None:
        at = self._clock()
        for practice, shown in seen.items():
            self._entries.record(access_entry(who, via, action, at, practice_id=practice,
                                              payment_ids=shown.payment_ids, count=shown.count, filters=filters,
                                              patient_account_ids=shown.accounts))

    async def page(self, who: Principal, query: AccessQuery, limit: int,
                   cursor: str | None) -> tuple[list[Record], str | None]:
        if not who.role.may_manage_keys:
            raise AccessDenied(f"{who.name} is not an admin: only an admin reads the access trail.")
        return await self._entries.page(query, who.scope, limit, cursor)
