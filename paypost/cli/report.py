"""`paypost postings` and `paypost failures`: the Merchant Transfers report in a terminal, through the API."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from rich.console import Console

from paypost.cli.common import api, err, out, print_json
from paypost.cli.tables import Columns, WideOption, print_fitted

# The report's columns, in the order they read, each with how it shows a row (as the API renders it).
# A narrow terminal gets the first ones of ``PRIORITY`` that fit whole, never a column cut to "PATIEN…".
COLUMNS: Columns = {
    "practice": lambda r: str(r.get("practice_id") or ""),
    "payment": lambda r: str(r.get("payment_id") or ""),
    "kind": lambda r: str(r.get("kind") or ""),
    "account": lambda r: str(r.get("patient_account_id") or ""),
    "amount": lambda r: str(r.get("amount") or ""),
    "Load Status": lambda r: str(r.get("load_status") or "") + (" late" if r.get("late_for_closed_period") else ""),
    "Load Error": lambda r: r["load_error"]["code"] if r.get("load_error") else "",
    "received": lambda r: (r.get("received_at") or "")[:16].replace("T", " "),
}
PRIORITY = ("payment", "Load Status", "Load Error", "amount", "account", "practice", "received", "kind")


def print_report(rows: list[dict[str, Any]], wide: bool = False, practice: str | None = None,
                 console: Console = out) -> None:
    """Report rows as the office reads them, within the terminal's width (``wide``: every column, past its
    edge). With ``practice`` (one practice asked for), it is the title, not a column."""
    priority = [name for name in PRIORITY if not (practice and name == "practice")]
    print_fitted(COLUMNS, priority, rows, wide=wide, title=f"practice {practice}" if practice else None,
                 console=console)


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
    wide: WideOption = False,
    as_json: Annotated[bool, typer.Option("--json", help="the page as the API answers it, as JSON")] = False,
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
    if as_json:
        print_json(page)
        return
    print_report(page["items"], wide=wide, practice=practice)


def failures(
    practice: Annotated[str | None, typer.Option(help="practice_id")] = None,
    error: Annotated[str | None, typer.Option(help="a Load Error code")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    wide: WideOption = False,
    as_json: Annotated[bool, typer.Option("--json", help="the page as the API answers it, as JSON")] = False,
) -> None:
    """The FAILED rows, newest first: what the office has to look at."""
    postings(practice=practice, status="FAILED", error=error, transfer=None, limit=limit, wide=wide, as_json=as_json)
