"""The `paypost` command."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from infra.local_services import ServiceError, data_dir
from infra.settings import Settings
from paypost.logging import configure_logging

T = TypeVar("T")
app = typer.Typer(help="paypost: load every payment into the right patient ledger.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
out = Console()
err = Console(stderr=True)


def _settings() -> Settings:
    try:
        return Settings()
    except ValueError as exc:
        err.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from exc


def _run(fn: Callable[[], Awaitable[T]]) -> T:
    try:
        return asyncio.run(fn())  # type: ignore[arg-type]
    except ServiceError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    except ConnectionError as exc:
        err.print(f"[red]cannot reach a service: {exc}[/red]")
        raise typer.Exit(1) from exc


@app.command()
def run(
    demo: Annotated[bool, typer.Option(help="Publish the demo payments once paypost is up.")] = False,
    local: Annotated[bool, typer.Option(help="Start a local mongod and RabbitMQ where none are configured.")] = True,
) -> None:
    """Run the consumers, the HTTP API and the console until SIGTERM or Ctrl-C."""
    import uvicorn

    from api.http import create_app
    from paypost.bootstrap import Paypost
    from paypost.services import ensure_local_services

    directory = data_dir()
    started = ensure_local_services(directory) if local else None
    settings = _settings()
    configure_logging(settings.log_level, settings.log_format)
    paypost = Paypost(settings)

    async def publish_demo() -> None:
        from producers.demo import run_demo

        result = await run_demo(paypost.publish, paypost.directory)
        err.print(f"demo: published {result.published} messages for practice {result.practice_id}: "
                  f"{result.expect_loaded} should load, {result.expect_failed} should fail")

    api = create_app(paypost, after_start=publish_demo if demo else None)
    tokens = settings.tokens
    if started and "PAYPOST_API_TOKENS" in started.env:
        err.print(f"API tokens for this local run are in {directory / 'api-tokens'} (token:role:name).")
    err.print(f"paypost on http://{settings.http} (console at /, API at /api/v1, "
              f"{len(tokens)} API token(s) configured)")
    tune_gc()
    # uvicorn re-raises the SIGTERM it caught once it has shut down (lifespan included); exit 0 then.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        uvicorn.run(api, host=settings.http_host, port=settings.http_port, log_level="warning",
                    loop="uvloop" if sys.platform != "win32" else "asyncio", lifespan="on")
    finally:
        if started:
            started.stop()


def tune_gc(young: int = 20_000) -> None:
    """Fewer garbage collections in a process that makes short-lived objects for every payment.

    What start-up imported and built lives as long as the process: it is frozen, so no full
    collection walks it again. A young collection runs every ``young`` allocations instead of 700;
    each one then finds mostly objects of payments already settled.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(young, 20, 20)


@app.command()
def demo() -> None:
    """Publish the demo: a practice, patients, and payments that load and that fail."""
    from paypost.bootstrap import Paypost
    from producers.demo import run_demo

    async def go() -> None:
        paypost = Paypost(_settings())
        await paypost.start(consume=False)
        try:
            result = await run_demo(paypost.publish, paypost.directory)
        finally:
            await paypost.stop()
        out.print(f"published {result.published} messages for practice [bold]{result.practice_id}[/bold]: "
                  f"{result.expect_loaded} should load, {result.expect_failed} should fail")

    _run(go)


@app.command()
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

    from consumers.reading import describe_validation
    from paypost.bootstrap import Paypost
    from producers.upstream import new_payment, publish_payment

    try:
        message = new_payment(practice, payment, account, amount, ehr_patient_id=ehr, method=method,
                              currency=currency, merchant_transfer_id=transfer)
    except ValidationError as exc:
        err.print(f"[red]not a valid payment:[/red] {describe_validation(exc)}")
        raise typer.Exit(2) from exc

    async def go() -> None:
        paypost = Paypost(_settings())
        await paypost.start(consume=False)
        try:
            await publish_payment(paypost.publish, message)
        finally:
            await paypost.stop()
        out.print(f"published payment {payment} (event {message.event_id})")

    _run(go)


def _table(rows: list[dict[str, Any]]) -> Table:
    table = Table("practice", "payment", "kind", "account", "amount", "Load Status", "Load Error", "received")
    for r in rows:
        error = r["load_error"]["code"] if r.get("load_error") else ""
        table.add_row(r["practice_id"], r["payment_id"], r["kind"], r.get("patient_account_id") or "",
                      r.get("amount") or "", r["load_status"], error, (r.get("received_at") or "")[:19])
    return table


@app.command()
def postings(
    practice: Annotated[str | None, typer.Option(help="practice_id")] = None,
    status: Annotated[str | None, typer.Option(help="PENDING, LOADED, FAILED, RETRYING or CLEARED")] = None,
    error: Annotated[str | None, typer.Option(help="a Load Error code")] = None,
    transfer: Annotated[str | None, typer.Option(help="merchant_transfer_id")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
) -> None:
    """The Merchant Transfers report as a table, newest first."""
    from api.render import row
    from domain.load_errors import LoadErrorCode
    from domain.model import LoadStatus
    from infra.mongo import Collections, connect
    from infra.reports import PostingFilter, PostingReport

    if status is not None and status.upper() not in LoadStatus.__members__:
        err.print(f"[red]unknown status {status!r}[/red]; use one of {', '.join(LoadStatus.__members__)}")
        raise typer.Exit(2)
    if error is not None and error.upper() not in LoadErrorCode.__members__:
        err.print(f"[red]unknown Load Error {error!r}[/red]; use one of {', '.join(LoadErrorCode.__members__)}")
        raise typer.Exit(2)

    async def go() -> None:
        settings = _settings()
        client = connect(settings.mongodb_uri)
        try:
            docs, _ = await PostingReport(Collections(client[settings.mongodb_db])).page(
                PostingFilter(practice_id=practice, status=status.upper() if status else None,
                              error_code=error.upper() if error else None, merchant_transfer_id=transfer),
                limit, None)
        finally:
            await client.close()
        out.print(_table([row(d) for d in docs]))

    _run(go)


@app.command()
def failures(
    practice: Annotated[str | None, typer.Option(help="practice_id")] = None,
    error: Annotated[str | None, typer.Option(help="a Load Error code")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
) -> None:
    """The FAILED rows, newest first: what the office has to look at."""
    postings(practice=practice, status="FAILED", error=error, transfer=None, limit=limit)


Ids = Annotated[list[str] | None, typer.Argument(help="payment or refund ids (or select with the filters)")]
Practice = Annotated[str, typer.Option(help="practice_id")]
ErrorFilter = Annotated[str | None, typer.Option("--error-code", help="every FAILED row with this Load Error")]
TransferFilter = Annotated[str | None, typer.Option("--transfer", help="every FAILED row of this merchant transfer")]
AccountFilter = Annotated[str | None, typer.Option("--account", help="every FAILED row of this patient account")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="show what would be done, and do nothing")]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="do not ask before applying")]
Operator = Annotated[str, typer.Option(help="who is acting, for the audit trail")]


def _default_operator() -> str:
    return f"cli:{os.environ.get('USER', 'operator')}"


@app.command()
def retry(
    practice: Practice, ids: Ids = None, error_code: ErrorFilter = None, transfer: TransferFilter = None,
    account: AccountFilter = None, dry_run: DryRun = False, yes: Yes = False,
    operator: Operator = "",
) -> None:
    """Retry FAILED payments: by id, or every one matching the filters (previewed first)."""
    _bulk("retry", practice, ids or [], error_code, transfer, account, dry_run, yes,
          operator or _default_operator(), reason=None, reference=None)


@app.command()
def clear(
    practice: Practice,
    reason: Annotated[str, typer.Option(help="why: reviewed, posted by hand, ... (required)")],
    ids: Ids = None, error_code: ErrorFilter = None, transfer: TransferFilter = None,
    account: AccountFilter = None,
    reference: Annotated[str | None, typer.Option(help="the manual ledger reference")] = None,
    dry_run: DryRun = False, yes: Yes = False, operator: Operator = "",
) -> None:
    """Clear FAILED payments (reviewed, posted by hand): by id, or every one matching the filters."""
    if not reason.strip():
        err.print("[red]--reason must not be empty: a clear needs a reason[/red]")
        raise typer.Exit(2)
    _bulk("clear", practice, ids or [], error_code, transfer, account, dry_run, yes,
          operator or _default_operator(), reason=reason, reference=reference)


def _bulk(action: str, practice: str, ids: list[str], error_code: str | None, transfer: str | None,
          account: str | None, dry_run: bool, yes: bool, operator: str, reason: str | None,
          reference: str | None) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from api.render import row
    from domain.load_errors import LoadErrorCode
    from infra.reports import PostingFilter
    from paypost.bootstrap import Paypost
    from schemas.messages import ClearItem

    if error_code is not None and error_code.upper() not in LoadErrorCode.__members__:
        err.print(f"[red]unknown Load Error {error_code!r}[/red]; use one of {', '.join(LoadErrorCode.__members__)}")
        raise typer.Exit(2)
    if not ids and not (error_code or transfer or account):
        err.print("[red]name payment ids, or select with --error-code, --transfer or --account[/red]")
        raise typer.Exit(2)

    async def go() -> None:
        paypost = Paypost(_settings())
        await paypost.start(consume=False)
        try:
            selected = list(ids)
            if error_code or transfer or account:
                where = PostingFilter(practice_id=practice, status="FAILED",
                                      error_code=error_code.upper() if error_code else None,
                                      merchant_transfer_id=transfer, patient_account_id=account)
                keys = await paypost.posting_commands.failed_keys(where.query())
                selected += [k.payment_id for k in keys]
            selected = list(dict.fromkeys(selected))
            if not selected:
                out.print("nothing matches: no FAILED rows for that selection")
                return
            preview = [row(d) for d in await paypost.collections.postings.find(
                {"practice_id": practice, "payment_id": {"$in": selected[:20]}},
                {"message": 0, "audit": 0, "attempts": 0}).to_list(None)]
            out.print(_table(preview))
            out.print(f"{'Would' if dry_run else 'Will'} {action} [bold]{len(selected)}[/bold] posting(s) of "
                      f"practice {practice}" + (f" (showing {len(preview)})" if len(selected) > len(preview) else ""))
            if dry_run:
                return
            if not yes and not typer.confirm("Apply?"):
                out.print("nothing applied")
                return
            clears = [ClearItem(payment_id=p, reason=reason or "", manual_reference=reference) for p in selected] \
                if action == "clear" else []
            operation_id = await paypost.save_changes(practice, selected if action == "retry" else [], clears,
                                                      operator)
            out.print(f"operation {operation_id}")
            with Progress(TextColumn(f"{action}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                          console=out) as progress:
                task = progress.add_task(action, total=len(selected))
                while True:
                    op = await paypost.operation_store.get(operation_id)
                    assert op is not None
                    progress.update(task, completed=op["done"])
                    if op["status"] == "completed":
                        break
                    await asyncio.sleep(0.5)
            counts: dict[str, int] = {}
            for item in op["items"]:
                counts[item["result"]] = counts.get(item["result"], 0) + 1
            out.print(", ".join(f"{n} {result}" for result, n in sorted(counts.items())))
            for item in op["items"]:
                if item["result"] in ("rejected", "unchanged"):
                    out.print(f"  {item['payment_id']}: {item['result']}: {item['message']}")
        finally:
            await paypost.stop()

    _run(go)


@app.command()
def watch(
    patterns: Annotated[list[str] | None, typer.Argument(help="routing-key patterns on paypost.events")] = None,
    count: Annotated[int, typer.Option(help="stop after this many events (0: run until Ctrl-C)")] = 0,
) -> None:
    """A live feed of paypost's events, for example `paypost watch 'posting.failed.#'`."""
    from infra.watch import watch_events

    chosen = patterns or ["posting.failed.#"]

    async def go() -> None:
        seen = 0
        async with watch_events(_settings().amqp_url, chosen) as events:
            err.print(f"watching paypost.events for {', '.join(chosen)} (Ctrl-C to stop)")
            while count == 0 or seen < count:
                event = await events.get()
                seen += 1
                out.print(_describe_event(event.routing_key, event.body), highlight=False)

    try:
        _run(go)
    except KeyboardInterrupt:
        pass


def _describe_event(routing_key: str, body: dict[str, Any]) -> str:
    when = str(body.get("occurred_at", ""))[11:19]
    parts = [when, routing_key]
    for key in ("payment_id", "alert_id", "merchant_transfer_id", "load_status", "state", "actor"):
        if body.get(key):
            parts.append(f"{key}={body[key]}")
    error = body.get("load_error")
    if isinstance(error, dict):
        parts.append(f"{error.get('code')}: {error.get('message')}")
    return "  ".join(parts)


@app.command()
def bench(
    quick: Annotated[bool, typer.Option("--quick", help="small sizes: finishes in under two minutes")] = False,
) -> None:
    """Measure throughput, latency, replay, the report at scale and memory, against raw RabbitMQ."""
    import json
    import time

    from paypost.bench import render, run, summary

    started = time.perf_counter()
    results = asyncio.run(run(quick, lambda line: err.print(f"[dim]{line}[/dim]")))
    print(render(results, quick, time.perf_counter() - started))
    print(json.dumps(summary(results)))


audit = typer.Typer(help="The tamper-evident audit trail.", no_args_is_help=True)
app.add_typer(audit, name="audit")


@audit.command("verify")
def audit_verify() -> None:
    """Recompute the audit trail's hash chain; exit 1 if any entry or seal was altered or removed."""
    from infra.audit_seals import AuditSealer
    from infra.mongo import Collections, connect

    async def go() -> bool:
        settings = _settings()
        client = connect(settings.mongodb_uri)
        try:
            sealer = AuditSealer(Collections(client[settings.mongodb_db]))
            await sealer.seal()
            result = await sealer.verify()
        finally:
            await client.close()
        out.print(f"{result.seals} seals, {result.entries} audit entries verified, {result.unsealed} not sealed yet")
        for problem in result.problems:
            out.print(f"[red]TAMPERED[/red] {problem}")
        return result.ok

    if not _run(go):
        raise typer.Exit(1)


@app.command()
def topology() -> None:
    """Declare paypost's exchanges, queues and bindings, and exit."""
    from paypost.bootstrap import Paypost

    async def go() -> None:
        paypost = Paypost(_settings())
        await paypost.start(consume=False)
        await paypost.stop()
        out.print("topology declared")

    _run(go)


@app.command()
def asyncapi(
    path: Annotated[Path, typer.Argument(help="where to write the AsyncAPI document")] = Path("docs/asyncapi.json"),
) -> None:
    """Write the AsyncAPI document of every exchange, routing key and message."""
    from api.asyncapi import asyncapi_text

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(asyncapi_text())
    out.print(f"wrote {path}")


@app.command("export-schemas")
def export_schemas(
    directory: Annotated[Path, typer.Argument(help="where to write the JSON Schemas")] = Path("schemas/json"),
) -> None:
    """Write the JSON Schema of every message to a directory."""
    from schemas.export import write_schemas

    for path in write_schemas(directory):
        out.print(f"wrote {path}")


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()
