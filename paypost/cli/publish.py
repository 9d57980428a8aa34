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
    practice: Annotated[str, typer.Option(help="practice_id")],
    payment: Annotated[str, typer.Option(help="payment_id")],
    account: Annotated[str, typer.Option(help="patient_account_id")],
    amount: Annotated[str, typer.Option(help='a decimal string such as "125.00"')],
    ehr: Annotated[str | None, typer.Option(help="ehr_patient_id, if the platform has one")] = None,
    method: Annotated[str, typer.Option()] = "card",
    currency: Annotated[str, typer.Option()] = "USD",
    transfer: Annotated[str | None, typer.Option(help="merchant_transfer_id")] = None,
) -> None:
    """Publish one payment.posted message, as an upstream system would."""
    from pydantic import ValidationError

    from paypost.producers.upstream import new_payment, publish_payment
    from paypost.schemas.reading import describe_validation

    try:
        message = new_payment(practice, payment, account, amount, ehr_patient_id=ehr, method=method,
                              currency=currency, merchant_transfer_id=transfer)
    except ValidationError as exc:
        err.print(f"[red]not a valid payment:[/red] {describe_validation(exc)}")
        raise typer.Exit(2) from exc

    async def go() -> None:
        async with publishing_paypost() as paypost:
            await publish_payment(paypost.publish, message)
        out.print(f"published payment {payment} (event {message.event_id})")

    run_async(go)
