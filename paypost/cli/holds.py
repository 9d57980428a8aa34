"""`paypost hold`, `paypost release` and `paypost practice`: a practice's system held through its
outage (contract section 7), by hand, through the API."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

import typer

from paypost.cli.common import JsonOption, api, out, print_json

PracticeArg = Annotated[str, typer.Argument(help="practice_id")]


def describe(practice: dict[str, Any]) -> str:
    """One line on where a practice's system stands, as an office reads it."""
    hold = practice.get("hold")
    name = f"{practice['practice_id']} ({practice['name']})"
    if hold is None:
        return f"{name}: its system answers; payments load as they arrive."
    waiting = f"{hold['waiting']} payment(s) waiting"
    if hold["health"] == "failing":
        return (f"{name}: its system stopped answering at {hold['since']} ({hold['last_error']}); {waiting}, "
                f"tried again at {hold['next_try_at']}.")
    by = f"by {hold['held_by']}" if hold["held_by"] else "by paypost"
    again = f"; one is tried at {hold['next_try_at']}" if hold["next_try_at"] else "; nothing is tried until released"
    return f"{name}: HELD {by} since {hold['held_since']}: {hold['reason']} ({waiting}{again})."


def practice(practice_id: PracticeArg, as_json: JsonOption = False) -> None:
    """Show a practice: its integration, and whether its system is failing or held."""
    with api() as paypost:
        found = paypost.get(f"/practices/{quote(practice_id, safe='')}")
    if as_json:
        print_json(found)
        return
    out.print(describe(found), highlight=False)


def hold(practice_id: PracticeArg,
         reason: Annotated[str, typer.Option(help="why, as the office will read it")]) -> None:
    """Hold a practice: its payments wait (HELD) and nothing goes to its system until released."""
    with api() as paypost:
        held = paypost.call("POST", f"/practices/{quote(practice_id, safe='')}/hold", json={"reason": reason})
    out.print(describe(held), highlight=False)


def release(practice_id: PracticeArg) -> None:
    """Release a held practice: its held payments load by themselves, in the order received."""
    with api() as paypost:
        released = paypost.call("POST", f"/practices/{quote(practice_id, safe='')}/release")
    out.print(describe(released), highlight=False)
