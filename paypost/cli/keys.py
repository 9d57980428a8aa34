"""`paypost api-keys create|list|revoke`: the platform's keys for each practice's office, through the API
(``PAYPOST_API_KEY`` must be an admin's)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from paypost.cli.common import JsonOption, api, err, out, print_json
from paypost.cli.tables import Columns, WideOption, print_fitted

keys = typer.Typer(help="API keys: who may see and change which practices (an admin's PAYPOST_API_KEY).",
                   no_args_is_help=True)


@keys.command()
def create(
    name: Annotated[str, typer.Option(help="who holds it: the audit trail records this name")],
    role: Annotated[str, typer.Option(help="viewer, operator or admin")] = "operator",
    practice: Annotated[list[str] | None, typer.Option(
        "--practice", help="a practice the key sees (repeat for more); * for every practice")] = None,
    expires_in_days: Annotated[float | None, typer.Option(min=0.001, help="the key stops working after this")] = None,
) -> None:
    """Make a key and print its token, once: paypost keeps only its hash."""
    if role not in ("viewer", "operator", "admin"):
        err.print(f"[red]unknown role {role!r}[/red]; use viewer, operator or admin")
        raise typer.Exit(2)
    if not practice:
        err.print("[red]name the key's practices with --practice (or --practice '*' for every practice)[/red]")
        raise typer.Exit(2)
    expires = datetime.now(UTC) + timedelta(days=expires_in_days) if expires_in_days else None
    with api() as paypost:
        made = paypost.call("POST", "/api-keys", json={
            "name": name, "role": role, "practices": practice,
            "expires_at": expires.isoformat() if expires else None})
    err.print(f"key {made['key_id']}: {made['name']} ({made['role']}) for {', '.join(made['practices'])}"
              + (f", until {made['expires_at']}" if made["expires_at"] else ""), highlight=False)
    err.print("The token below is shown this once; give it to the key's holder as PAYPOST_API_KEY.")
    print(made["token"])  # noqa: T201 - alone on stdout, for a script to capture


@keys.command("list")
def list_keys(wide: WideOption = False, as_json: JsonOption = False) -> None:
    """The keys within the admin's scope (never a token)."""
    with api() as paypost:
        page = paypost.get("/api-keys")
    if as_json:
        print_json(page)
        return
    print_fitted(KEY_COLUMNS, KEY_PRIORITY, page["items"], wide=wide)


KEY_COLUMNS: Columns = {
    "key_id": lambda k: str(k["key_id"]),
    "name": lambda k: str(k["name"]),
    "role": lambda k: str(k["role"]),
    "practices": lambda k: ", ".join(k["practices"]),
    "created": lambda k: str(k["created_at"])[:16].replace("T", " "),
    "by": lambda k: str(k["created_by"]),
    "expires": lambda k: str(k["expires_at"] or "")[:16].replace("T", " "),
    "revoked": lambda k: str(k["revoked_at"] or "")[:16].replace("T", " "),
}
KEY_PRIORITY = ("key_id", "name", "role", "revoked", "practices", "expires", "created", "by")


@keys.command()
def revoke(key_id: Annotated[str, typer.Argument(help="the key's key_id (paypost api-keys list)")]) -> None:
    """Revoke a key at once: its next call gets 401."""
    with api() as paypost:
        revoked = paypost.call("DELETE", f"/api-keys/{key_id}")
    out.print(f"key {revoked['key_id']} ({revoked['name']}) revoked at {revoked['revoked_at']}", highlight=False)
