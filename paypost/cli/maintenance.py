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


def audit_verify(
    against: Annotated[Path | None, typer.Option(
        help="an export of the seals' heads (`paypost audit export`): the chain must still hold them")] = None,
) -> None:
    """Recompute the audit trail's hash chain and check each seal's signature (PAYPOST_AUDIT_KEY); exit 1
    if any entry, access entry or seal was altered or removed, a seal was signed with another key, or
    (with --against) the trail was cut short or rolled back.

    A maintenance command: it reads the database directly, as the platform's staff do."""
    from paypost.bootstrap import maintenance
    from paypost.cli.patient_data import read_export

    exported = read_export(against) if against is not None else None

    async def go() -> bool:
        async with maintenance(load_settings()) as staff:
            result = await staff.verify_audit(exported)
        out.print(f"{result.seals} seals, {result.entries} audit entries verified, {result.unsealed} not sealed yet")
        out.print(f"{result.records} access entries and purge records verified; "
                  f"{result.removed_by_retention} entries removed by retention", highlight=False)
        if result.keyed:
            out.print(f"{result.signed} seals signed with PAYPOST_AUDIT_KEY", highlight=False)
        else:
            out.print("[yellow]no PAYPOST_AUDIT_KEY: signatures not checked[/yellow] (someone who can write to "
                      "the database could rewrite the trail and hash it again)")
        if exported is not None:
            out.print(f"compared with {len(exported)} exported seal heads", highlight=False)
        for problem in result.problems:
            out.print(f"[red]TAMPERED[/red] {problem}", highlight=False)
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
