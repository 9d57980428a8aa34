"""`paypost postings` and `paypost failures`: the Merchant Transfers report in a terminal, through the API."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Annotated, Any

import orjson
import typer
from rich import box
from rich.console import Console
from rich.table import Table

from paypost.cli.common import api, err, out

# The report's columns, in the order they read, each with how it shows a row (as the API renders it).
# A narrow terminal gets the first ones of ``PRIORITY`` that fit whole, never a column cut to "PATIEN…".
COLUMNS: dict[str, Callable[[dict[str, Any]], str]] = {
    "practice": lambda r: str(r.get("practice_id") or ""),
    "payment": lambda r: str(r.get("payment_id") or ""),
    "kind": lambda r: str(r.get("kind") or ""),
    "account": lambda r: str(r.get("patient_account_id") or ""),
    "amount": lambda r: str(r.get("amount") or ""),
    "Load Status": lambda r: str(r.get("load_status") or ""),
    "Load Error": lambda r: r["load_error"]["code"] if r.get("load_error") else "",
    "received": lambda r: (r.get("received_at") or "")[:16].replace("T", " "),
}
PRIORITY = ("payment", "Load Status", "Load Error", "amount", "account", "practice", "received", "kind")
CELL = 3  # what rich adds to a column of this table: a space each side, and the line between columns


def report_table(rows: list[dict[str, Any]], width: int | None = None, wide: bool = False,
                 practice: str | None = None) -> Table:
    """Report rows (as the API renders them) as the office reads them, within ``width`` columns (the
    terminal's): the columns of ``PRIORITY`` that fit whole, a caption naming those left out (``wide``:
    every column, however wide). With ``practice`` (one practice asked for), its column is left out."""
    cells = {name: [show(r) for r in rows] for name, show in COLUMNS.items()}
    natural = {name: max([len(name), *map(len, values)]) for name, values in cells.items()}
    wanted = [name for name in PRIORITY if not (practice and name == "practice")]
    chosen: list[str] = []
    room = (width or out.width) - 1  # the table's outer edge
    for name in wanted:
        need = natural[name] + CELL
        if wide or need <= room:
            chosen.append(name)
            room -= need
    left_out = [name for name in wanted if name not in chosen]
    caption = f"not shown: {', '.join(left_out)} (--wide shows every column)" if left_out else None
    table = Table(*[name for name in COLUMNS if name in chosen], caption=caption,
                  title=f"practice {practice}" if practice else None, box=box.SIMPLE_HEAD)
    for column in table.columns:
        column.overflow = "fold"  # a value longer than the room is folded onto the next line, never cut
        column.no_wrap = False
    for i in range(len(rows)):
        table.add_row(*[cells[name][i] for name in COLUMNS if name in chosen])
    table.min_width = sum(natural[name] + CELL for name in chosen) + 1 if wide else None
    return table


def print_report(rows: list[dict[str, Any]], wide: bool = False, practice: str | None = None,
                 console: Console = out) -> None:
    """The report as ``report_table`` lays it out; ``wide`` as wide as its columns, past the terminal's edge."""
    table = report_table(rows, console.width, wide, practice)
    terminal = console.width
    console.width = max(terminal, table.min_width or 0)  # rich lays out no wider than its console
    try:
        console.print(table, crop=False)
    finally:
        console.width = terminal


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
    wide: Annotated[bool, typer.Option("--wide", help="every column, however wide the terminal")] = False,
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
        sys.stdout.write(orjson.dumps(page, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    print_report(page["items"], wide=wide, practice=practice)


def failures(
    practice: Annotated[str | None, typer.Option(help="practice_id")] = None,
    error: Annotated[str | None, typer.Option(help="a Load Error code")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    wide: Annotated[bool, typer.Option("--wide", help="every column, however wide the terminal")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="the page as the API answers it, as JSON")] = False,
) -> None:
    """The FAILED rows, newest first: what the office has to look at."""
    postings(practice=practice, status="FAILED", error=error, transfer=None, limit=limit, wide=wide, as_json=as_json)
