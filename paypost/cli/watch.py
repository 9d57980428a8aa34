"""`paypost watch`: a live feed of paypost's events, for a terminal or a dashboard.

By default a client of the HTTP live feed (``/api/v1/events/stream``) with ``PAYPOST_API_URL`` and
``PAYPOST_API_KEY``, as the office's other commands: it shows only the key's practices, and it ends
when the key is revoked or expires. ``--broker`` reads ``paypost.events`` straight from the broker
with ``PAYPOST_AMQP_URL`` instead, for a dashboard's RabbitMQ user (``paypost dashboards grant``),
whose topic permission holds it to one practice.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Annotated, Any

import orjson
import typer

from paypost.cli.common import Api, api, err, load_settings, out, run_async


def watch(
    patterns: Annotated[list[str] | None, typer.Argument(help="routing-key patterns on paypost.events")] = None,
    count: Annotated[int, typer.Option(help="stop after this many events (0: run until Ctrl-C)")] = 0,
    practice: Annotated[str | None, typer.Option("--practice", help="only this practice's events")] = None,
    broker: Annotated[bool, typer.Option("--broker", help="read the broker with PAYPOST_AMQP_URL (a dashboard's "
                                                          "RabbitMQ user), not the API")] = False,
) -> None:
    """A live feed of paypost's events, for example `paypost watch 'posting.failed.#'`."""
    chosen = patterns or ["posting.failed.#"]
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a feed is left
        if broker:
            _from_broker(chosen, count)
            return
        with api() as client:
            err.print(f"watching {client.url} for {', '.join(chosen)} (Ctrl-C to stop)")
            seen = 0
            for routing_key, body in _events(client, practice):
                if not any(topic_matches(p, routing_key) for p in chosen):
                    continue
                out.print(describe_event(routing_key, body), highlight=False)
                seen += 1
                if count and seen >= count:
                    return


def _events(client: Api, practice: str | None) -> Iterator[tuple[str, dict[str, Any]]]:
    """The feed's events as they come; the feed ending because its key lapsed ends the command (exit 2)."""
    kind = ""
    for line in client.stream_lines("/events/stream", practice_id=practice):
        if line.startswith("event:"):
            kind = line.removeprefix("event:").strip()
        elif line.startswith("data:"):
            data = orjson.loads(line.removeprefix("data:"))
            if kind == "end":
                err.print(f"[red]the live feed ended: {data.get('reason')}[/red]")
                raise typer.Exit(2)
            if kind == "paypost" and isinstance(data, dict):
                yield str(data.pop("routing_key", "")), data
        elif not line:
            kind = ""
    err.print("[red]the live feed closed (paypost stopped?)[/red]")
    raise typer.Exit(1)


def _from_broker(chosen: list[str], count: int) -> None:
    from paypost.infra.rabbit.watch import watch_events

    async def go() -> None:
        seen = 0
        async with watch_events(load_settings().amqp_url, chosen) as events:
            err.print(f"watching paypost.events for {', '.join(chosen)} (Ctrl-C to stop)")
            while count == 0 or seen < count:
                event = await events.get()
                seen += 1
                out.print(describe_event(event.routing_key, event.body), highlight=False)

    run_async(go)


def topic_matches(pattern: str, routing_key: str) -> bool:
    """Whether ``routing_key`` matches an AMQP topic ``pattern`` (``*`` one word, ``#`` zero or more),
    as the broker would bind it."""
    def match(words: list[str], keys: list[str]) -> bool:
        if not words:
            return not keys
        if words[0] == "#":
            return any(match(words[1:], keys[i:]) for i in range(len(keys) + 1))
        return bool(keys) and words[0] in ("*", keys[0]) and match(words[1:], keys[1:])

    return match(pattern.split("."), routing_key.split("."))


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
