"""`paypost watch`: a live feed of paypost's events, for a terminal or a dashboard."""

from __future__ import annotations

import contextlib
from typing import Annotated, Any

import typer

from paypost.cli.common import err, load_settings, out, run_async


def watch(
    patterns: Annotated[list[str] | None, typer.Argument(help="routing-key patterns on paypost.events")] = None,
    count: Annotated[int, typer.Option(help="stop after this many events (0: run until Ctrl-C)")] = 0,
) -> None:
    """A live feed of paypost's events, for example `paypost watch 'posting.failed.#'`."""
    from infra.watch import watch_events

    chosen = patterns or ["posting.failed.#"]

    async def go() -> None:
        seen = 0
        async with watch_events(load_settings().amqp_url, chosen) as events:
            err.print(f"watching paypost.events for {', '.join(chosen)} (Ctrl-C to stop)")
            while count == 0 or seen < count:
                event = await events.get()
                seen += 1
                out.print(describe_event(event.routing_key, event.body), highlight=False)

    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a feed is left
        run_async(go)


def describe_event(routing_key: str, body: dict[str, Any]) -> str:
    """One line per event: when, its routing key, and the ids and codes it carries."""
    when = str(body.get("occurred_at", ""))[11:19]
    parts = [when, routing_key]
    parts += [f"{key}={body[key]}" for key in ("payment_id", "alert_id", "merchant_transfer_id", "load_status",
                                               "state", "actor") if body.get(key)]
    error = body.get("load_error")
    if isinstance(error, dict):
        parts.append(f"{error.get('code')}: {error.get('message')}")
    return "  ".join(parts)
