"""`paypost publish` and `paypost demo`: payments published as an upstream system would."""

from __future__ import annotations

from typing import Annotated

import typer

from paypost.cli.common import err, out, publishing_paypost, run_async


def demo() -> None:
    """Publish the demo: a practice, patients, and payments that load and that fail."""
    from paypost.producers.demo import run_demo

    async def go() -> None:
        async with publishing_paypost() as paypost:
            result = await run_demo(paypost.publish, paypost.application.practices)
        out.print(f"published {result.published} messages for practice [bold]{result.practice_id}[/bold]: "
                  f"{result.expect_loaded} should load, {result.expect_failed} should fail")

    run_async(go)


def publish(
    practice: Annotated[str | None, typer.Option(help="practice_id")] = None,
    payment: Annotated[str | None, typer.Option(help="payment_id")] = None,
    account: Annotated[str | None, typer.Option(help="patient_account_id")] = None,
    amount: Annotated[str | None, typer.Option(help='a decimal string such as "125.00"')] = None,
    ehr: Annotated[str | None, typer.Option(help="ehr_patient_id, if the platform has one")] = None,
    method: Annotated[str, typer.Option()] = "card",
    currency: Annotated[str, typer.Option()] = "USD",
    transfer: Annotated[str | None, typer.Option(help="merchant_transfer_id")] = None,
    message: Annotated[str | None, typer.Option(
        help="publish another message of paypost.payments by its routing key instead (payment.refunded, "
             "payment.voided, payment.returned, payment.disputed, dispute.closed, transfer.settled, "
             "patient.mapping.updated, deposit.received), with --body")] = None,
    body: Annotated[str | None, typer.Option(
        help="that message's JSON body, or @file to read it from a file, or - for standard input; "
             "event_id and occurred_at are filled in when missing")] = None,
) -> None:
    """Publish one payment.posted message, as an upstream system would; or, with --message and --body,
    any other message of paypost.payments (a refund, a void, a return, a chargeback, a closed dispute)."""
    from pydantic import ValidationError

    from paypost.producers.upstream import new_payment, publish_payment
    from paypost.schemas.reading import describe_validation

    if message is not None:
        _publish_other(message, body)
        return
    if practice is None or payment is None or account is None or amount is None:
        err.print("[red]a payment needs --practice, --payment, --account and --amount[/red] "
                  "(or --message and --body for another message)")
        raise typer.Exit(2)
    try:
        posted = new_payment(practice, payment, account, amount, ehr_patient_id=ehr, method=method,
                             currency=currency, merchant_transfer_id=transfer)
    except ValidationError as exc:
        err.print(f"[red]not a valid payment:[/red] {describe_validation(exc)}")
        raise typer.Exit(2) from exc

    async def go() -> None:
        async with publishing_paypost() as paypost:
            await publish_payment(paypost.publish, posted)
        out.print(f"published payment {payment} (event {posted.event_id})")

    run_async(go)


def _publish_other(routing_key: str, body: str | None) -> None:
    """Publish a message of ``paypost.payments`` other than a payment, checked against the contract first."""
    import sys
    from pathlib import Path

    from paypost.producers.upstream import UPSTREAM_MESSAGES, NotAMessage, publish_upstream, upstream_message

    if routing_key not in UPSTREAM_MESSAGES:
        err.print(f"[red]unknown message {routing_key!r}:[/red] one of {', '.join(sorted(UPSTREAM_MESSAGES))}")
        raise typer.Exit(2)
    if body is None:
        err.print("[red]--message needs --body[/red] (JSON, @file or -)")
        raise typer.Exit(2)
    try:
        text = sys.stdin.read() if body == "-" else Path(body[1:]).read_text() if body.startswith("@") else body
    except OSError as exc:
        err.print(f"[red]cannot read {body[1:]}:[/red] {exc.strerror}")
        raise typer.Exit(2) from exc
    try:
        parsed, event_id = upstream_message(routing_key, text)
    except NotAMessage as exc:
        err.print(f"[red]not a valid {routing_key} message:[/red] {exc}")
        raise typer.Exit(2) from exc

    async def go() -> None:
        async with publishing_paypost() as paypost:
            await publish_upstream(paypost.publish, routing_key, parsed, event_id)
        out.print(f"published {routing_key} (event {event_id})")

    run_async(go)
