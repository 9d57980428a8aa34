"""`paypost postings` and `paypost failures`: the Merchant Transfers report in a terminal, through the API."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from paypost.cli.common import api, err, out


def report_table(rows: list[dict[str, Any]]) -> Table:
    """Report rows (as the API renders them) as the office reads them."""
    table = Table("practice", "payment", "kind", "account", "amount", "Load Status", "Load Error", "received")
    for r in rows:
        error = r["load_error"]["code"] if r.get("load_error") else ""
        table.add_row(r["practice_id"], r["payment_id"], r["kind"], r.get("patient_account_id") or "",
                      r.get("amount") or "", r["load_status"], error, (r.get("received_at") or "")[:19])
    return table


def load_error_code(code: str | None) -> str | None:
    """A Load Error code as stored (upper case); exit 2, naming the codes, if there is none such."""
    from paypost.domain.load_errors import LoadErrorCode

    if code is not None and code.upper() not in LoadErrorCode.__members__:
        err.print(f"[red]unknown Load Error {code!r}[/red]; use one of {', '.join(LoadErrorCode.__members__)}")
        raise typer.Exit(2)
    return code.upper() if code else None


def postings(
    practice: Annotated[str | None, typer.Option(help="practice_id")] = None,
    status: Annotated[str | None, typer.Option(help="PENDING, LOADED, FAILED, RETRYING or CLEARED")] = None,
    error: Annotated[str | None, typer.Option(help="a Load Error code")] = None,
    transfer: Annotated[str | None, typer.Option(help="merchant_transfer_id")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    as_csv: Annotated[bool, typer.Option("--csv", help="every row the filters select, as CSV on stdout")] = False,
) -> None:
    """The Merchant Transfers report as a table, newest first (through the API, as PAYPOST_API_KEY sees it)."""
    from paypost.domain.model import LoadStatus

    if status is not None and status.upper() not in LoadStatus.__members__:
        err.print(f"[red]unknown status {status!r}[/red]; use one of {', '.join(LoadStatus.__members__)}")
        raise typer.Exit(2)
    error_code = load_error_code(error)
    filters = {"practice_id": practice, "status": status.upper() if status else None, "error_code": error_code,
               "merchant_transfer_id": transfer}
    with api() as paypost:
        if as_csv:  # streamed through: a report of any size, never held whole
            paypost.stream_to("/postings.csv", sys.stdout.buffer, **filters)
            return
        page = paypost.get("/postings", **filters, limit=limit)
    out.print(report_table(page["items"]))


def failures(
    practice: Annotated[str | None, typer.Option(help="practice_id")] = None,
    error: Annotated[str | None, typer.Option(help="a Load Error code")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
) -> None:
    """The FAILED rows, newest first: what the office has to look at."""
    postings(practice=practice, status="FAILED", error=error, transfer=None, limit=limit)
