"""What the commands share: the two consoles, the settings, a coroutine run with the services'
errors turned into exit codes, and a paypost that publishes without consuming.

Exit codes: 0 done; 1 a service could not be reached (or the audit trail was altered);
2 bad input or configuration; 3 a retry or clear saved but still pending at its ``--timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console

from paypost.domain.errors import ServiceError
from paypost.infra.runtime.settings import Settings

if TYPE_CHECKING:
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


API_URL = "http://127.0.0.1:8080"
# What each refusal of the API means for someone at a terminal, and the exit code it is.
REFUSALS = {
    401: ("PAYPOST_API_KEY is not a key paypost knows (or it was revoked or has expired)", 2),
    403: ("PAYPOST_API_KEY's role does not allow this", 2),
    404: ("not found (or not a practice this key may see)", 2),
    429: ("too many calls with unknown keys from this address: wait a minute", 1),
}


class Api:
    """The paypost HTTP API as the office's commands use it (``PAYPOST_API_URL``, ``PAYPOST_API_KEY``),
    so that a command sees and changes what its key may, as the console does.

    Every refusal is printed in plain words and ends the command with its exit code.
    """

    def __init__(self, url: str, key: str, client: Any) -> None:
        self.url = url
        self._key = key
        self._client = client

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        r = self.raw(method, path, **kwargs)
        if not r.is_success:
            self.refused(method, path, r)
        return r.json()

    def refused(self, method: str, path: str, r: Any) -> NoReturn:
        """Print a refusal in plain words and end the command with its exit code."""
        try:
            message = r.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = r.text[:200]
        meaning, code = REFUSALS.get(r.status_code, ("refused", 2 if r.status_code < 500 else 1))
        err.print(f"[red]{method} {path}: {r.status_code} {meaning}[/red]: {message}", highlight=False)
        raise typer.Exit(code)

    def raw(self, method: str, path: str, **kwargs: Any) -> Any:
        """The answer as it is (an ``httpx.Response``), refusals included; only an unreachable API ends the command."""
        import httpx

        try:
            return self._client.request(method, f"/api/v1{path}", **kwargs)
        except httpx.TransportError as exc:
            err.print(f"[red]cannot reach the paypost API at {self.url} (PAYPOST_API_URL): {exc}[/red]")
            raise typer.Exit(1) from exc

    def stream_to(self, path: str, sink: Any, **params: Any) -> None:
        """Copy a streamed answer (an export) to ``sink`` as it arrives; a refusal ends the command."""
        import httpx

        query = {k: v for k, v in params.items() if v is not None}
        try:
            with self._client.stream("GET", f"/api/v1{path}", params=query) as r:
                if not r.is_success:
                    r.read()
                    self.refused("GET", path, r)
                for chunk in r.iter_bytes():
                    sink.write(chunk)
                sink.flush()
        except httpx.TransportError as exc:
            err.print(f"[red]cannot reach the paypost API at {self.url} (PAYPOST_API_URL): {exc}[/red]")
            raise typer.Exit(1) from exc

    def stream_lines(self, path: str, **params: Any) -> Iterator[str]:
        """The lines of a streamed answer (the live feed) as they come, waiting as long as it takes for
        the next; a refusal or an API that cannot be reached ends the command."""
        import httpx

        query = {k: v for k, v in params.items() if v is not None}
        try:
            with self._client.stream("GET", f"/api/v1{path}", params=query,
                                     timeout=httpx.Timeout(30, read=None)) as r:
                if not r.is_success:
                    r.read()
                    self.refused("GET", path, r)
                yield from r.iter_lines()
        except httpx.TransportError as exc:
            err.print(f"[red]cannot reach the paypost API at {self.url} (PAYPOST_API_URL): {exc}[/red]")
            raise typer.Exit(1) from exc

    def get(self, path: str, **params: Any) -> Any:
        return self.call("GET", path, params={k: v for k, v in params.items() if v is not None})


JsonOption = Annotated[bool, typer.Option("--json", help="the rows as the API answers them, as one JSON document")]


def print_json(document: Any) -> None:
    """``document`` (an API's answer) alone on stdout as one indented JSON document, for a script."""
    import sys

    import orjson

    sys.stdout.write(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n")


@contextlib.contextmanager
def api() -> Iterator[Api]:
    """The API client; exit 2, saying what to set, without ``PAYPOST_API_KEY``."""
    import os

    import httpx

    url = os.environ.get("PAYPOST_API_URL", "").strip() or API_URL
    key = os.environ.get("PAYPOST_API_KEY", "").strip()
    if not key:
        err.print("[red]set PAYPOST_API_KEY to an API key[/red] (the office's commands go through the API at "
                  f"{url}; PAYPOST_API_URL names another)")
        raise typer.Exit(2)
    with httpx.Client(base_url=url.rstrip("/"), headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
        yield Api(url, key, client)
