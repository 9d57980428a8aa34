"""`paypost dashboards grant|revoke|list`: RabbitMQ users that read one practice's events (contract section 6).

They run ``rabbitmqctl`` (on this machine's node, or another with ``--node``; the management
plugin is not needed). ``grant --print`` shows the same steps as rabbitmqctl lines instead, for a
cluster this machine cannot reach.
"""

from __future__ import annotations

import contextlib
import secrets
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated
from urllib.parse import unquote, urlsplit

import typer
from rich.markup import escape

from paypost.cli.common import JsonOption, err, load_settings, out, print_json
from paypost.cli.tables import Columns, WideOption, print_fitted
from paypost.domain.errors import ServiceError
from paypost.infra.rabbit.broker_admin import BrokerAdmin, grant_commands

Practice = Annotated[str, typer.Option(help="the practice_id whose events the user may read")]
User = Annotated[str, typer.Option(help="the RabbitMQ user of the dashboard")]
Vhost = Annotated[str | None, typer.Option(help="the vhost of paypost's exchanges (default: PAYPOST_AMQP_URL's)")]
Node = Annotated[str | None, typer.Option(
    "--node", "-n", help="the RabbitMQ node to change, e.g. rabbit@broker1 (rabbitmqctl's -n; it needs that "
                         "node's Erlang cookie); default: rabbitmqctl's own (RABBITMQ_NODENAME)")]


def vhost_of(amqp_url: str) -> str:
    """The vhost an AMQP URL names (the first URL, if several are listed): ``/`` when none."""
    path = urlsplit(amqp_url.split(",")[0].strip()).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def _vhost(vhost: str | None) -> str:
    return vhost if vhost is not None else vhost_of(load_settings().amqp_url)


@contextlib.contextmanager
def _exit_codes() -> Iterator[None]:
    """Bad input is exit 2, a broker (or rabbitmqctl) that fails is exit 1; each with its reason."""
    try:
        yield
    except ValueError as exc:
        err.print(f"[red]{escape(str(exc))}[/red]")
        raise typer.Exit(2) from exc
    except ServiceError as exc:
        err.print(f"[red]{escape(str(exc))}[/red]")
        raise typer.Exit(1) from exc


def _password(password_file: Path | None) -> str | None:
    if password_file is None:
        return None
    try:
        password = password_file.read_text().strip()
    except OSError as exc:
        err.print(f"[red]cannot read {password_file}: {exc.strerror}[/red]")
        raise typer.Exit(2) from exc
    if not password:
        err.print(f"[red]{password_file} is empty[/red]")
        raise typer.Exit(2)
    return password


def grant(
    practice: Practice,
    user: User,
    password_file: Annotated[Path | None, typer.Option(
        help="a file holding the user's password; without it a new user gets a generated password, "
             "printed once, and an existing user keeps its own")] = None,
    vhost: Vhost = None,
    node: Node = None,
    print_only: Annotated[bool, typer.Option("--print", help="print the rabbitmqctl lines; change nothing")] = False,
) -> None:
    """Let a RabbitMQ user bind to one practice's events on paypost.events, and to nothing else."""
    vhost = _vhost(vhost)
    with _exit_codes():
        commands = grant_commands(user, practice, vhost)
    if print_only:
        out.print(escape(f"# only for a new user (it reads the password from standard input):\n"
                         f"rabbitmqctl add_user {shlex.quote(user)}"), soft_wrap=True)
        for command in commands:
            out.print(escape(shlex.join(["rabbitmqctl", *command])), soft_wrap=True)
        return
    password = _password(password_file)
    with _exit_codes():
        admin = BrokerAdmin(node=node)
        generated = password is None and not admin.user_exists(user)
        if generated:
            password = secrets.token_hex(20)  # hex: nothing to escape in an amqp:// URL
        result = admin.grant(user, practice, vhost, password)
    if result.previous_practice:
        err.print(f"user {user} could read practice {result.previous_practice} in vhost {vhost}; "
                  f"now practice {practice} only")
    err.print(escape(f"user {user} ({'added' if result.created else 'existing'}) reads practice {practice}'s "
                     f"events on paypost.events in vhost {vhost}: it may bind an exclusive queue to "
                     f"posting.failed.{practice}.#, alert.opened.{practice}.task and the like, and nothing else"),
              soft_wrap=True)
    if generated:
        out.print(f"password (shown once; paypost keeps no copy): {password}", soft_wrap=True, markup=False)


def revoke(
    user: User,
    vhost: Vhost = None,
    node: Node = None,
    delete_user: Annotated[bool, typer.Option(help="remove the user altogether (every vhost)")] = False,
) -> None:
    """Take a dashboard user's access to the vhost away (its topic permission and permissions)."""
    vhost = _vhost(vhost)
    with _exit_codes():
        BrokerAdmin(node=node).revoke(user, vhost, delete_user=delete_user)
    err.print(f"user {user} {'removed' if delete_user else f'has no access to vhost {vhost} any more'}")


def list_dashboards(vhost: Vhost = None, node: Node = None, wide: WideOption = False,
                    as_json: JsonOption = False) -> None:
    """The users with a topic permission on paypost.events in the vhost, and the practice each reads."""
    vhost = _vhost(vhost)
    with _exit_codes():
        found = BrokerAdmin(node=node).dashboards(vhost)
    if as_json:  # not an API's answer (the broker's), in the shape the API's lists take
        print_json({"items": [{"user": d.user, "vhost": d.vhost, "practice_id": d.practice_id,
                               "read_pattern": d.read_pattern} for d in found]})
        return
    rows = [{"user": d.user, "practice": d.practice_id or "(not made by paypost)", "pattern": d.read_pattern}
            for d in found]
    print_fitted(DASHBOARD_COLUMNS, tuple(DASHBOARD_COLUMNS), rows, wide=wide, title=f"dashboards in vhost {vhost}")


DASHBOARD_COLUMNS: Columns = {
    "user": lambda r: str(r["user"]),
    "practice": lambda r: str(r["practice"]),
    "topic read pattern": lambda r: str(r["pattern"]),
}
