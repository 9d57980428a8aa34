"""Maintenance: `paypost topology`, `paypost audit verify`, `paypost asyncapi`, `paypost export-schemas`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from paypost.cli.common import err, load_settings, out, publishing_paypost, run_async


def topology() -> None:
    """Declare paypost's exchanges, queues and bindings, and exit."""

    async def go() -> None:
        async with publishing_paypost():
            pass
        out.print("topology declared")

    run_async(go)


def audit_verify() -> None:
    """Recompute the audit trail's hash chain; exit 1 if any entry or seal was altered or removed.

    A maintenance command: it reads the database directly, as the platform's staff do."""
    from paypost.bootstrap import maintenance

    async def go() -> bool:
        async with maintenance(load_settings()) as staff:
            result = await staff.verify_audit()
        out.print(f"{result.seals} seals, {result.entries} audit entries verified, {result.unsealed} not sealed yet")
        for problem in result.problems:
            out.print(f"[red]TAMPERED[/red] {problem}")
        return result.ok

    if not run_async(go):
        raise typer.Exit(1)


def asyncapi(
    path: Annotated[Path, typer.Argument(help="where to write the AsyncAPI document")] = Path("docs/asyncapi.json"),
) -> None:
    """Write the AsyncAPI document of every exchange, routing key and message."""
    from paypost.infra.rabbit.asyncapi import asyncapi_text

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(asyncapi_text())
    out.print(f"wrote {path}")


def export_schemas(
    directory: Annotated[Path, typer.Argument(help="where to write the JSON Schemas")] = Path("schemas/json"),
) -> None:
    """Write the JSON Schema of every message to a directory."""
    from paypost.schemas.export import write_schemas

    for path in write_schemas(directory):
        out.print(f"wrote {path}")


def secrets_rotate() -> None:
    """Seal every stored practice-management secret again with the first key of PAYPOST_SECRET_KEY.

    To rotate: set PAYPOST_SECRET_KEY to "NEW,OLD" everywhere, run this once, then set it to "NEW".
    A maintenance command: it reads and writes the database directly."""
    from paypost.bootstrap import maintenance
    from paypost.domain.integrations import MissingSecretKey, SecretKeyError

    settings = load_settings()

    async def go() -> int:
        async with maintenance(settings) as staff:
            return await staff.reseal_secrets()

    try:
        count = run_async(go)
    except MissingSecretKey as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    except SecretKeyError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    out.print(f"{count} practice secret(s) sealed with the first key")
