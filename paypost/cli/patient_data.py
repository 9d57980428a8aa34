"""Patient data (contract section 12): `paypost access-log` (through the API, an admin's key),
`paypost purge` and `paypost audit export` (maintenance: the database directly, as the platform's
staff run `paypost audit verify`)."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from paypost.cli.common import api, err, load_settings, out, run_async
from paypost.cli.tables import Columns, WideOption, print_fitted


def access_log(
    practice: Annotated[str | None, typer.Option(help="practice_id")] = None,
    payment: Annotated[str | None, typer.Option(help="payment_id")] = None,
    patient_account: Annotated[str | None, typer.Option(help="patient_account_id")] = None,
    key: Annotated[str | None, typer.Option(help="key_id")] = None,
    since: Annotated[datetime | None, typer.Option(help="from this time (ISO 8601, UTC if no offset)")] = None,
    until: Annotated[datetime | None, typer.Option(help="before this time")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000, help="at most this many entries")] = 100,
    wide: WideOption = False,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object a line")] = False,
) -> None:
    """Who was shown which payments, newest first (through the API: PAYPOST_API_KEY must be an admin's)."""
    params = {"practice_id": practice, "payment_id": payment, "patient_account_id": patient_account, "key_id": key,
              "since": _iso(since), "until": _iso(until)}
    items: list[dict[str, object]] = []
    with api() as paypost:
        cursor: str | None = None
        while len(items) < limit:
            page = paypost.get("/access-log", **params, cursor=cursor, limit=min(500, limit - len(items)))
            items += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
    if as_json:
        for item in items:
            print(json.dumps(item))  # noqa: T201 - the entries alone on stdout, for a script
        return
    print_fitted(ACCESS_COLUMNS, ACCESS_PRIORITY, items, wide=wide)


def _shown(e: dict[str, object]) -> str:
    ids = e["payment_ids"]
    return ", ".join(map(str, ids)) if isinstance(ids, list) else f"{e['count']} rows ({e['filters']})"


ACCESS_COLUMNS: Columns = {
    "at": lambda e: str(e["at"])[:16].replace("T", " "),
    "key": lambda e: str(e["key_name"]),
    "role": lambda e: str(e["role"]),
    "client": lambda e: str(e["client"]),
    "action": lambda e: str(e["action"]),
    "route": lambda e: str(e["route"]),
    "practice": lambda e: str(e["practice_id"] or ""),
    "shown": _shown,
}
ACCESS_PRIORITY = ("at", "key", "shown", "action", "practice", "route", "client", "role")


def _iso(at: datetime | None) -> str | None:
    if at is None:
        return None
    from datetime import UTC

    return (at if at.tzinfo else at.replace(tzinfo=UTC)).isoformat()


def purge(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="say what would go; remove nothing")] = False,
    page: Annotated[int, typer.Option(min=1, max=10000, help="postings or entries removed per round")] = 1000,
    daily: Annotated[bool, typer.Option("--daily", help="as the day's purge: under the workers' lease, and "
                                                         "nothing if today's purge is done or running")] = False,
) -> None:
    """Remove what retention says must go (PAYPOST_RETENTION_DAYS, PAYPOST_MESSAGE_RETENTION_DAYS), never
    a practice under legal hold; in pages, saying how far it has got. A maintenance command: it reads and
    writes the database directly. The daily purge of `paypost run` does the same once a day."""
    from paypost.bootstrap import maintenance
    from paypost.domain.access_trail import PurgeCounts

    settings = load_settings()

    def progress(what: str, counts: PurgeCounts) -> None:
        err.print(f"  ... {what}: {counts.as_dict()}", highlight=False)

    async def go() -> PurgeCounts | None:
        async with maintenance(settings) as staff:
            if daily and not dry_run:
                return await staff.purge_daily(page)
            return await staff.purge(dry_run=dry_run, page=page, progress=progress)

    counts = run_async(go)
    if counts is None:
        out.print("today's purge is done, or another paypost is doing it: nothing to do", highlight=False)
        return
    verb = "would remove" if dry_run else "removed"
    out.print(f"{verb} {counts.postings} postings ({counts.audit_entries} audit entries), "
              f"{counts.access_entries} access entries and {counts.message_bodies} kept message bodies "
              f"(postings kept {settings.retention_days} days after their last change, settled message bodies "
              f"{settings.message_retention_days} days)", highlight=False)
    if counts.held_practices:
        out.print(f"under legal hold, kept whole: {', '.join(counts.held_practices)}", highlight=False)


def audit_export(
    path: Annotated[Path | None, typer.Argument(help="where to write the heads (default: stdout)")] = None,
) -> None:
    """Write each seal's head (seq, hash, time, key id, signature), one JSON line each, to keep outside the
    database: `paypost audit verify --against FILE` then finds a trail cut short or rolled back."""
    from paypost.bootstrap import maintenance

    async def go() -> list[dict[str, object]]:
        async with maintenance(load_settings()) as staff:
            return await staff.audit_heads()

    heads = run_async(go)
    text = "".join(json.dumps(head, sort_keys=True) + "\n" for head in heads)
    if path is None:
        sys.stdout.write(text)
    else:
        path.write_text(text)
        err.print(f"{len(heads)} seal heads written to {path}", highlight=False)


def read_export(path: Path) -> list[dict[str, object]]:
    """The heads an export wrote; exit 2, saying which line, for a file that is not one."""
    heads: list[dict[str, object]] = []
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        err.print(f"[red]cannot read {path}: {exc.strerror}[/red]")
        raise typer.Exit(2) from exc
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            head = json.loads(line)
        except ValueError:
            head = None
        if not isinstance(head, dict) or not isinstance(head.get("seq"), int) or not isinstance(head.get("hash"), str):
            err.print(f"[red]{path} line {number} is not a seal head from `paypost audit export`[/red]")
            raise typer.Exit(2)
        heads.append(head)
    return heads
