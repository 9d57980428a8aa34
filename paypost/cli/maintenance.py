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
    from infra.audit_seals import AuditSealer
    from infra.mongo import Collections, connect

    async def go() -> bool:
        settings = load_settings()
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

    if not run_async(go):
        raise typer.Exit(1)


def asyncapi(
    path: Annotated[Path, typer.Argument(help="where to write the AsyncAPI document")] = Path("docs/asyncapi.json"),
) -> None:
    """Write the AsyncAPI document of every exchange, routing key and message."""
    from infra.asyncapi import asyncapi_text

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(asyncapi_text())
    out.print(f"wrote {path}")


def export_schemas(
    directory: Annotated[Path, typer.Argument(help="where to write the JSON Schemas")] = Path("schemas/json"),
) -> None:
    """Write the JSON Schema of every message to a directory."""
    from schemas.export import write_schemas

    for path in write_schemas(directory):
        out.print(f"wrote {path}")


def secrets_rotate() -> None:
    """Seal every stored practice-management secret again with the first key of PAYPOST_SECRET_KEY.

    To rotate: set PAYPOST_SECRET_KEY to "NEW,OLD" everywhere, run this once, then set it to "NEW".
    A maintenance command: it reads and writes the database directly."""
    from infra.directory import reseal_secrets
    from infra.mongo import Collections, connect
    from infra.secrets import SecretBox, SecretKeyError

    settings = load_settings()
    if not settings.secret_key.strip():
        err.print("[red]PAYPOST_SECRET_KEY (or PAYPOST_SECRET_KEY_FILE) is not set: nothing to rotate with[/red]")
        raise typer.Exit(2)

    async def go() -> int:
        client = connect(settings.mongodb_uri)
        try:
            return await reseal_secrets(Collections(client[settings.mongodb_db]), SecretBox(settings.secret_key))
        finally:
            await client.close()

    try:
        count = run_async(go)
    except SecretKeyError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    out.print(f"{count} practice secret(s) sealed with the first key")
