"""The `paypost` command: one module per command or group of commands, gathered here."""

from __future__ import annotations

import os

import typer

from paypost.cli import (
    bench,
    changes,
    dashboards,
    holds,
    keys,
    maintenance,
    month_end,
    patient_data,
    publish,
    report,
    run,
    watch,
)

app = typer.Typer(help="paypost: load every payment into the right patient ledger.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
# In this order in `paypost --help` (groups come last).
app.command()(run.run)
app.command()(publish.demo)
app.command()(publish.publish)
app.command("publish-deposit")(month_end.publish_deposit)
app.command()(report.postings)
app.command()(report.failures)
app.command()(changes.retry)
app.command()(changes.clear)
app.command()(holds.practice)
app.command()(holds.hold)
app.command()(holds.release)
app.command()(watch.watch)
app.command()(month_end.deposits)
app.command()(month_end.aging)
app.command()(bench.bench)
app.command("access-log")(patient_data.access_log)
app.command()(patient_data.purge)

app.add_typer(keys.keys, name="api-keys")

period = typer.Typer(help="A practice's month: its figures, readiness and close (contract section 11).",
                     no_args_is_help=True)
app.add_typer(period, name="period")
period.command("show")(month_end.period_show)
period.command("close")(month_end.period_close)

audit = typer.Typer(help="The tamper-evident audit trail.", no_args_is_help=True)
app.add_typer(audit, name="audit")
audit.command("verify")(maintenance.audit_verify)
audit.command("export")(patient_data.audit_export)

dashboard = typer.Typer(help="RabbitMQ users that read one practice's events (contract section 6).",
                         no_args_is_help=True)
app.add_typer(dashboard, name="dashboards")
dashboard.command("grant")(dashboards.grant)
dashboard.command("revoke")(dashboards.revoke)
dashboard.command("list")(dashboards.list_dashboards)

secrets = typer.Typer(help="The practice-management secrets paypost keeps encrypted.", no_args_is_help=True)
app.add_typer(secrets, name="secrets")
secrets.command("rotate")(maintenance.secrets_rotate)

app.command()(maintenance.topology)
app.command()(maintenance.asyncapi)
app.command("export-schemas")(maintenance.export_schemas)


def main() -> None:
    """The `paypost` console script."""
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()
