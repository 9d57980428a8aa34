"""`paypost retry` and `paypost clear`: Save Changes from a terminal, previewed, then followed
until the operation completes or its ``--timeout`` passes."""

from __future__ import annotations

import asyncio
import os
import time
from typing import TYPE_CHECKING, Annotated

import typer

from paypost.cli.common import err, out, publishing_paypost, run_async
from paypost.cli.report import load_error_code, report_table

if TYPE_CHECKING:
    from domain.ports import Record
    from handlers.application import Application

Ids = Annotated[list[str] | None, typer.Argument(help="payment or refund ids (or select with the filters)")]
Practice = Annotated[str, typer.Option(help="practice_id")]
ErrorFilter = Annotated[str | None, typer.Option("--error-code", help="every FAILED row with this Load Error")]
TransferFilter = Annotated[str | None, typer.Option("--transfer", help="every FAILED row of this merchant transfer")]
AccountFilter = Annotated[str | None, typer.Option("--account", help="every FAILED row of this patient account")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="show what would be done, and do nothing")]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="do not ask before applying")]
Operator = Annotated[str, typer.Option(help="who is acting, for the audit trail")]
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
    from api.render import row
    from domain.load_errors import LoadErrorCode
    from domain.ports import FailedSelection
    from schemas.messages import ClearItem

    error_code = load_error_code(error_code)
    if not ids and not (error_code or transfer or account):
        err.print("[red]name payment ids, or select with --error-code, --transfer or --account[/red]")
        raise typer.Exit(2)

    async def go() -> None:
        async with publishing_paypost() as paypost:
            app = paypost.application
            selected = list(ids)
            if error_code or transfer or account:
                selection = FailedSelection(practice, frozenset({LoadErrorCode(error_code)}) if error_code else None,
                                            patient_account_id=account, merchant_transfer_id=transfer)
                selected += [k.payment_id for k in await app.reports.failed(selection)]
            selected = list(dict.fromkeys(selected))
            if not selected:
                out.print("nothing matches: no FAILED rows for that selection")
                return
            preview = [row(d) for d in await app.reports.rows(practice, selected[:PREVIEW_ROWS])]
            out.print(report_table(preview))
            out.print(f"{'Would' if dry_run else 'Will'} {action} [bold]{len(selected)}[/bold] posting(s) of "
                      f"practice {practice}" + (f" (showing {len(preview)})" if len(selected) > len(preview) else ""))
            if dry_run:
                return
            if not yes and not typer.confirm("Apply?"):
                out.print("nothing applied")
                return
            clears = [ClearItem(payment_id=p, reason=reason or "", manual_reference=reference) for p in selected] \
                if action == "clear" else []
            operation_id = await app.save_changes(practice, selected if action == "retry" else [], clears, operator)
            out.print(f"operation {operation_id}")
            op = await _follow(app, operation_id, action, len(selected), timeout)
            _print_results(op)
            if op["status"] != "completed":
                _print_pending(op, timeout)
                raise typer.Exit(EXIT_PENDING)

    run_async(go)


async def _follow(app: Application, operation_id: str, action: str, total: int, within: int) -> Record:
    """The operation once it has completed, or as it stands when ``within`` seconds have passed."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    deadline = time.monotonic() + within
    with Progress(TextColumn(f"{action}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=out) as progress:
        task = progress.add_task(action, total=total)
        while True:
            op = await app.reports.operation(operation_id)
            progress.update(task, completed=op["done"])
            left = deadline - time.monotonic()
            if op["status"] == "completed" or left <= 0:
                return op
            await asyncio.sleep(min(POLL_SECONDS, left))


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
