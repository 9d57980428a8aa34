"""What the commands share: the two consoles, the settings, a coroutine run with the services'
errors turned into exit codes, and a paypost that publishes without consuming.

Exit codes: 0 done; 1 a service could not be reached (or the audit trail was altered);
2 bad input or configuration; 3 a retry or clear saved but still pending at its ``--timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console

from infra.local_services import ServiceError
from infra.settings import Settings

if TYPE_CHECKING:
    from handlers.application import Application
    from paypost.bootstrap import Paypost

T = TypeVar("T")
out = Console()
err = Console(stderr=True)


def load_settings() -> Settings:
    """The settings from the environment; exit 2, saying why, if they are not valid."""
    try:
        return Settings()
    except ValueError as exc:
        err.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from exc


def run_async(fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``fn()`` to its end; a service that cannot be reached is exit 1, with its reason."""
    try:
        return asyncio.run(fn())
    except ServiceError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    except ConnectionError as exc:
        err.print(f"[red]cannot reach a service: {exc}[/red]")
        raise typer.Exit(1) from exc


@contextlib.asynccontextmanager
async def publishing_paypost() -> AsyncIterator[Paypost]:
    """paypost with its indexes and topology in place, publishing but consuming nothing."""
    from paypost.bootstrap import Paypost

    paypost = Paypost(load_settings())
    await paypost.start(consume=False)
    try:
        yield paypost
    finally:
        await paypost.stop()


@contextlib.asynccontextmanager
async def office() -> AsyncIterator[Application]:
    """paypost's handlers for the office's reads: nothing is started (the broker is not needed)."""
    from paypost.bootstrap import Paypost

    paypost = Paypost(load_settings())
    try:
        yield paypost.application
    finally:
        await paypost.stop()
