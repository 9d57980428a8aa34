"""`paypost retry` and `paypost clear`: Save Changes from a terminal, through the API, previewed, then
followed until the operation completes or its ``--timeout`` passes."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Annotated, Any
from urllib.parse import quote

import typer

from paypost.cli.common import Api, api, err, out
from paypost.cli.report import load_error_code, print_report

Record = dict[str, Any]  # an answer of the API, as JSON

Ids = Annotated[list[str] | None, typer.Argument(help="payment or refund ids (or select with the filters)")]
Practice = Annotated[str, typer.Option(help="practice_id")]
ErrorFilter = Annotated[str | None, typer.Option("--error-code", help="every FAILED row with this Load Error")]
TransferFilter = Annotated[str | None, typer.Option("--transfer", help="every FAILED row of this merchant transfer")]
AccountFilter = Annotated[str | None, typer.Option("--account", help="every FAILED row of this patient account")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="show what would be done, and do nothing")]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="do not ask before applying")]
Operator = Annotated[str, typer.Option(
    help="kept for scripts; the audit trail records the name of PAYPOST_API_KEY, which says who is acting")]
Timeout = Annotated[int, typer.Option(
    min=1, help="seconds to follow the operation; if it has not completed by then, exit 3 naming the payments "
                "still pending (paypost goes on applying them: GET /api/v1/operations/{id})")]

PREVIEW_ROWS = 20
# Five minutes: a bulk retry is paced (PAYPOST_REPLAY_RATE, 2,000 a second by default), so even
# 100,000 replays finish well within it; an operation nothing applies is named, not waited on.
DEFAULT_TIMEOUT = 300
EXIT_PENDING = 3  # saved, not complete yet: the exit codes are listed in paypost/cli/common.py
PENDING_SHOWN = 5
POLL_SECONDS = 0.5


def _default_operator() -> str:
    return f"cli:{os.environ.get('USER', 'operator')}"


def retry(
    practice: Practice, ids: Ids = None, error_code: ErrorFilter = None, transfer: TransferFilter = None,
    account: AccountFilter = None, dry_run: DryRun = False, yes: Yes = False,
    operator: Operator = "", timeout: Timeout = DEFAULT_TIMEOUT,
) -> None:
    """Retry FAILED payments: by id, or every one matching the filters (previewed first).

    Shows the operation's progress until it completes; past --timeout seconds, exits 3 naming the
    payments still pending.
    """
    _bulk("retry", practice, ids or [], error_code, transfer, account, dry_run, yes,
          operator or _default_operator(), timeout, reason=None, reference=None)


def clear(
    practice: Practice,
    reason: Annotated[str, typer.Option(help="why: reviewed, posted by hand, ... (required)")],
    ids: Ids = None, error_code: ErrorFilter = None, transfer: TransferFilter = None,
    account: AccountFilter = None,
    reference: Annotated[str | None, typer.Option(help="the manual ledger reference")] = None,
    dry_run: DryRun = False, yes: Yes = False, operator: Operator = "", timeout: Timeout = DEFAULT_TIMEOUT,
) -> None:
    """Clear FAILED payments (reviewed, posted by hand): by id, or every one matching the filters.

    Shows the operation's progress until it completes; past --timeout seconds, exits 3 naming the
    payments still pending.
    """
    if not reason.strip():
        err.print("[red]--reason must not be empty: a clear needs a reason[/red]")
        raise typer.Exit(2)
    _bulk("clear", practice, ids or [], error_code, transfer, account, dry_run, yes,
          operator or _default_operator(), timeout, reason=reason, reference=reference)


def _bulk(action: str, practice: str, ids: list[str], error_code: str | None, transfer: str | None,
          account: str | None, dry_run: bool, yes: bool, operator: str, timeout: int, reason: str | None,
          reference: str | None) -> None:
    error_code = load_error_code(error_code)
    if not ids and not (error_code or transfer or account):
        err.print("[red]name payment ids, or select with --error-code, --transfer or --account[/red]")
        raise typer.Exit(2)
    with api() as paypost:
        selected = list(ids)
        known: dict[str, Record] = {}
        if error_code or transfer or account:
            for row in _failed_rows(paypost, practice, error_code, transfer, account):
                known[row["payment_id"]] = row
                selected.append(row["payment_id"])
        selected = list(dict.fromkeys(selected))
        if not selected:
            out.print("nothing matches: no FAILED rows for that selection")
            return
        preview = [found for p in selected[:PREVIEW_ROWS]
                   if (found := known.get(p) or _row(paypost, practice, p)) is not None]
        print_report(preview, practice=practice)
        out.print(f"{'Would' if dry_run else 'Will'} {action} [bold]{len(selected)}[/bold] posting(s) of "
                  f"practice {practice}" + (f" (showing {len(preview)})" if len(selected) > len(preview) else ""))
        if dry_run:
            return
        if not yes and not typer.confirm("Apply?"):
            out.print("nothing applied")
            return
        body: dict[str, object] = {"practice_id": practice, "retry": selected if action == "retry" else [],
                                   "clear": [{"payment_id": p, "reason": reason or "", "manual_reference": reference}
                                             for p in selected] if action == "clear" else []}
        operation_id = paypost.call("POST", "/postings/changes", json=body)["operation_id"]
        out.print(f"operation {operation_id}")
        op = _follow(paypost, operation_id, action, len(selected), timeout)
    _print_results(op)
    if op["status"] != "completed":
        _print_pending(op, timeout)
        raise typer.Exit(EXIT_PENDING)


def _failed_rows(paypost: Api, practice: str, error_code: str | None, transfer: str | None,
                 account: str | None) -> Iterator[Record]:
    """Every FAILED row of the practice that the filters select, page by page."""
    cursor = None
    while True:
        page = paypost.get("/postings", practice_id=practice, status="FAILED", error_code=error_code,
                           merchant_transfer_id=transfer, patient_account_id=account, limit=500, cursor=cursor)
        yield from page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            return


def _row(paypost: Api, practice: str, payment_id: str) -> Record | None:
    """A posting's row for the preview; None for an id paypost does not hold (Save Changes says so per item)."""
    r = paypost.raw("GET", f"/postings/{practice}/{quote(payment_id, safe='')}")
    return r.json() if r.status_code == 200 else None


def _follow(paypost: Api, operation_id: str, action: str, total: int, within: int) -> Record:
    """The operation once it has completed, or as it stands when ``within`` seconds have passed."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    deadline = time.monotonic() + within
    with Progress(TextColumn(f"{action}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=out) as progress:
        task = progress.add_task(action, total=total)
        while True:
            op: Record = paypost.get(f"/operations/{operation_id}")
            progress.update(task, completed=op["done"])
            left = deadline - time.monotonic()
            if op["status"] == "completed" or left <= 0:
                return op
            time.sleep(min(POLL_SECONDS, left))


def _print_results(op: Record) -> None:
    """How many items came to each result, then why each refused or unchanged item was."""
    counts: dict[str, int] = {}
    for item in op["items"]:
        if item["result"] is not None:
            counts[item["result"]] = counts.get(item["result"], 0) + 1
    if counts:
        out.print(", ".join(f"{n} {result}" for result, n in sorted(counts.items())))
    for item in op["items"]:
        if item["result"] in ("rejected", "unchanged"):
            out.print(f"  {item['payment_id']}: {item['result']}: {item['message']}")


def _print_pending(op: Record, timeout: int) -> None:
    """What an operation not complete at the timeout still waits for, and where to follow it."""
    pending = [item["payment_id"] for item in op["items"] if item["result"] is None]
    more = f" and {len(pending) - PENDING_SHOWN} more" if len(pending) > PENDING_SHOWN else ""
    err.print(f"operation {op['operation_id']} did not complete within {timeout} s: {op['done']} of {op['total']} "
              f"done; {len(pending)} still pending: {', '.join(pending[:PENDING_SHOWN])}{more}",
              markup=False, highlight=False, soft_wrap=True)
    err.print(f"paypost goes on applying it: follow it with GET /api/v1/operations/{op['operation_id']}",
              markup=False, highlight=False, soft_wrap=True)
