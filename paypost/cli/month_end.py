"""`paypost deposits`, `paypost aging`, `paypost period show|close` and `paypost publish-deposit`: the
month end (contract section 11) at a terminal, through the API as PAYPOST_API_KEY sees it."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.table import Table

from paypost.cli.common import JsonOption, api, err, out, print_json, publishing_paypost, run_async
from paypost.cli.tables import Columns, WideOption, print_fitted

PracticeArg = Annotated[str, typer.Argument(help="practice_id")]
MonthArg = Annotated[str, typer.Argument(help="the month, YYYY-MM, in the practice's time zone")]


def _p(practice_id: str) -> str:
    return f"/practices/{quote(practice_id, safe='')}"


def deposits(
    practice_id: PracticeArg,
    status: Annotated[str | None, typer.Option(help="matched, unmatched or ambiguous")] = None,
    match: Annotated[str | None, typer.Option(help="a deposit_id to match by hand (with --transfer, --reason)")] = None,
    unmatch: Annotated[str | None, typer.Option(help="a deposit_id to unmatch (with --reason)")] = None,
    transfer: Annotated[list[str] | None, typer.Option(help="a merchant_transfer_id (repeat for several)")] = None,
    reason: Annotated[str | None, typer.Option(help="why, for the audit trail")] = None,
    wide: WideOption = False,
    as_json: JsonOption = False,
) -> None:
    """The practice's deposits and what each matched; or match or unmatch one by hand."""
    if status is not None and status not in ("matched", "unmatched", "ambiguous"):
        err.print(f"[red]unknown status {status!r}[/red]; use matched, unmatched or ambiguous")
        raise typer.Exit(2)
    if (match or unmatch) and not reason:
        err.print("[red]--reason is required to match or unmatch by hand[/red]")
        raise typer.Exit(2)
    with api() as paypost:
        if match:
            if not transfer:
                err.print("[red]--transfer is required with --match[/red]")
                raise typer.Exit(2)
            done = paypost.call("POST", f"{_p(practice_id)}/deposits/{quote(match, safe='')}/match",
                                json={"merchant_transfer_ids": transfer, "reason": reason})
            out.print(f"deposit {done['deposit_id']} matched to {', '.join(done['merchant_transfer_ids'])} "
                      f"(difference {done['difference']})", highlight=False)
            return
        if unmatch:
            done = paypost.call("POST", f"{_p(practice_id)}/deposits/{quote(unmatch, safe='')}/unmatch",
                                json={"reason": reason})
            out.print(f"deposit {done['deposit_id']} is unmatched; its transfers are open again", highlight=False)
            return
        page = paypost.get(f"{_p(practice_id)}/deposits", status=status)
    if as_json:
        print_json(page)
        return
    print_fitted(DEPOSIT_COLUMNS, DEPOSIT_PRIORITY, page["items"], wide=wide, title=f"deposits of {practice_id}")


DEPOSIT_COLUMNS: Columns = {
    "deposit": lambda d: str(d["deposit_id"]),
    "amount": lambda d: str(d["amount"]),
    "deposited": lambda d: str(d["deposited_at"])[:16].replace("T", " "),
    "status": lambda d: str(d["status"]),
    "transfers": lambda d: ", ".join(d["merchant_transfer_ids"]),
    "difference": lambda d: str(d["difference"] or ""),
    "candidates": lambda d: " | ".join("+".join(c) for c in d.get("candidates") or []),
}
DEPOSIT_PRIORITY = ("deposit", "status", "amount", "transfers", "candidates", "difference", "deposited")


def aging(practice_id: PracticeArg, as_json: JsonOption = False) -> None:
    """Transfers without a deposit and deposits without a transfer, by age in days."""
    with api() as paypost:
        found = paypost.get(f"{_p(practice_id)}/aging")
    if as_json:
        print_json(found)
        return
    table = Table("age (days)", "transfers", "amount", "deposits", "amount")
    for bucket in ("0-2", "3-5", "6-10", "over-10"):
        t, d = found["transfers"][bucket], found["deposits"][bucket]
        table.add_row(bucket, str(t["count"]), t["amount"], str(d["count"]), d["amount"])
    out.print(table)


def describe_period(p: dict[str, Any]) -> str:
    lines = [f"{p['practice_id']} {p['month']} ({p['time_zone']}): net {p['net_amount']}, "
             + ("READY to close" if p["ready"] else "NOT ready")]
    for kind, t in p["by_kind"].items():
        lines.append(f"  {kind}: {t['count']} for {t['amount']}")
    for method, t in p["by_method"].items():
        lines.append(f"    by {method}: {t['count']} for {t['amount']}")
    for status, t in p["by_status"].items():
        lines.append(f"  {status}: {t['count']}")
    lines.append(f"  transfers reconciled {p['transfers']['reconciled']['count']}, "
                 f"not {p['transfers']['not_reconciled']['count']}; deposits matched "
                 f"{p['deposits']['matched']['count']}, not {p['deposits']['not_matched']['count']}")
    lines += [f"  blocker: {b['count']} {b['kind'].replace('_', ' ')} ({b['amount']})" for b in p["blockers"]]
    if p["late_payment_ids"]:
        lines.append(f"  arrived after the close: {', '.join(p['late_payment_ids'])}")
    if p["closed"]:
        c = p["closed"]
        lines.append(f"  closed {c['closed_at']} by {c['closed_by']}" + (" (forced)" if c["forced"] else "")
                     + f"; {c['rows']} rows, digest {c['digest']}")
    return "\n".join(lines)


def period_show(
    practice_id: PracticeArg, month: MonthArg,
    as_csv: Annotated[bool, typer.Option("--csv", help="the month's rows as CSV on stdout")] = False,
    as_json: JsonOption = False,
) -> None:
    """A month's figures, readiness and blockers (or its rows as CSV)."""
    import sys

    with api() as paypost:
        if as_csv:
            paypost.stream_to(f"{_p(practice_id)}/periods/{quote(month, safe='')}.csv", sys.stdout.buffer)
            return
        found = paypost.get(f"{_p(practice_id)}/periods/{quote(month, safe='')}")
    if as_json:
        print_json(found)
        return
    out.print(describe_period(found), highlight=False)


def period_close(practice_id: PracticeArg, month: MonthArg,
                 note: Annotated[str, typer.Option(help="a note kept with the close")] = "",
                 force: Annotated[bool, typer.Option(help="close despite its blockers (needs --reason)")] = False,
                 reason: Annotated[str | None, typer.Option(help="why it is closed despite its blockers")] = None,
                 ) -> None:
    """Close a ready month; one with blockers is refused (exit 2, listing them) unless forced with a reason."""
    with api() as paypost:
        r = paypost.raw("POST", f"{_p(practice_id)}/periods/{quote(month, safe='')}/close",
                        json={"note": note, "force": force, "reason": reason})
        if r.status_code == 409 and "blockers" in r.json().get("error", {}):
            err.print(f"[red]{r.json()['error']['message']}[/red]", highlight=False)
            raise typer.Exit(2)
        if not r.is_success:
            paypost.refused("POST", f"{_p(practice_id)}/periods/{month}/close", r)
    out.print(describe_period(r.json()), highlight=False)


def publish_deposit(
    practice: Annotated[str, typer.Option(help="practice_id")],
    deposit: Annotated[str, typer.Option(help="deposit_id")],
    amount: Annotated[str, typer.Option(help='a decimal string such as "964.10"')],
    deposited_at: Annotated[str | None, typer.Option(help="RFC 3339 with an offset; default now")] = None,
    transfer: Annotated[list[str] | None, typer.Option(help="a merchant_transfer_id it names (repeat)")] = None,
    currency: Annotated[str, typer.Option()] = "USD",
) -> None:
    """Publish one deposit.received message, as a bank feed would."""
    from pydantic import ValidationError

    from paypost.producers.upstream import new_deposit
    from paypost.producers.upstream import publish_deposit as send
    from paypost.schemas.reading import describe_validation

    try:
        message = new_deposit(practice, deposit, amount, currency=currency, deposited_at=deposited_at,
                              merchant_transfer_ids=transfer)
    except ValidationError as exc:
        err.print(f"[red]not a valid deposit:[/red] {describe_validation(exc)}")
        raise typer.Exit(2) from exc

    async def go() -> None:
        async with publishing_paypost() as paypost:
            await send(paypost.publish, message)
        out.print(f"published deposit {deposit} (event {message.event_id})")

    run_async(go)
