"""Dashboards on the broker (contract section 6): RabbitMQ users that may read one practice's events.

Done with ``rabbitmqctl`` (RabbitMQ's management plugin is not needed, and is not enabled on the
project's machines). ``rabbitmqctl -n rabbit@host`` reaches another node, given that node's Erlang
cookie; :func:`grant_commands` gives the same steps as command lines, to be run on a node of a
cluster that this machine cannot reach.

A dashboard user gets, in one vhost:

- configure, write and read on its own queues only (``amq.gen-*``, named by the broker, and
  ``amq_*``, named by aio-pika's robust channels): it declares an exclusive queue and binds it (a
  binding needs write on the queue). It has no write on ``paypost.events`` nor on the default
  exchange, so it publishes nothing there;
- read on ``paypost.events``, with a topic permission on that exchange whose read pattern admits
  only the practice's routing keys: RabbitMQ refuses (ACCESS_REFUSED) a binding to any other key,
  ``#`` and ``posting.failed.#`` included.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass

from paypost.domain.errors import ServiceError
from paypost.schemas.topics import EVENTS_EXCHANGE
from paypost.schemas.types import PRACTICE_ID_PATTERN

# Its own queues: server-named (amq.gen-*), or named by aio-pika's robust channels (amq_*), as
# `paypost watch` and infra/rabbit/watch.py make them.
_OWN_QUEUES = r"amq\.gen-.*|amq_.*"
CONFIGURE = rf"^({_OWN_QUEUES})$"
WRITE = rf"^({_OWN_QUEUES})$"
READ = rf"^({re.escape(EVENTS_EXCHANGE)}|{_OWN_QUEUES})$"
TOPIC_WRITE = "^$"  # publishes nothing on paypost.events
_TOPIC_READ = re.compile(r"^\^\[a-z\]\+\\\.\[a-z\]\+\\\.(?P<practice>.+)\(\\\.\.\*\)\?\$$")
# No leading "-": rabbitmqctl would read the name as an option.
_USER = re.compile(r"^[A-Za-z0-9_.@][A-Za-z0-9_.@-]{0,127}$")


def topic_read_pattern(practice_id: str) -> str:
    """The topic permission's read pattern: ``^[a-z]+\\.[a-z]+\\.<practice_id>(\\..*)?$``."""
    check_practice_id(practice_id)
    return r"^[a-z]+\.[a-z]+\." + re.escape(practice_id) + r"(\..*)?$"


def check_practice_id(practice_id: str) -> None:
    if not re.match(PRACTICE_ID_PATTERN, practice_id):
        raise ValueError(f"a practice id matches [A-Za-z0-9_-]{{1,64}}, not {practice_id!r}")


def check_user(user: str) -> None:
    if not _USER.match(user):
        raise ValueError(f"a dashboard user name is 1 to 128 of A-Z a-z 0-9 _ . @ - (not starting with -), "
                         f"not {user!r}")


def practice_of(read_pattern: str) -> str | None:
    """The practice a topic read pattern made by :func:`topic_read_pattern` admits, else None."""
    found = _TOPIC_READ.match(read_pattern)
    if found is None:
        return None
    practice = re.sub(r"\\(.)", r"\1", found["practice"])
    return practice if re.match(PRACTICE_ID_PATTERN, practice) else None


def grant_commands(user: str, practice_id: str, vhost: str) -> list[list[str]]:
    """The rabbitmqctl arguments that give ``user`` (already added) a dashboard of one practice."""
    check_user(user)
    return [
        ["set_permissions", "-p", vhost, user, CONFIGURE, WRITE, READ],
        ["set_topic_permissions", "-p", vhost, user, EVENTS_EXCHANGE, TOPIC_WRITE, topic_read_pattern(practice_id)],
    ]


@dataclass(frozen=True, slots=True)
class Dashboard:
    """A user's topic permission on ``paypost.events`` in one vhost."""

    user: str
    vhost: str
    practice_id: str | None  # None: a read pattern that this module did not make
    read_pattern: str


@dataclass(frozen=True, slots=True)
class Granted:
    created: bool  # the user was added (else it existed)
    password_set: bool  # its password was set now
    previous_practice: str | None  # the practice it could read before in this vhost, if another


class BrokerAdmin:
    """Users and permissions of one RabbitMQ node (or cluster), through ``rabbitmqctl``."""

    def __init__(self, rabbitmqctl: str | None = None, node: str | None = None, timeout: float = 60) -> None:
        binary = rabbitmqctl or shutil.which("rabbitmqctl")
        if binary is None:
            raise ServiceError("rabbitmqctl is not installed: install RabbitMQ's CLI tools, or run the lines "
                               "`paypost dashboards grant --print` shows on a node of the cluster")
        self._ctl = [binary, *(["-n", node] if node else [])]
        self._timeout = timeout

    def _run(self, *args: str, stdin: str | None = None) -> str:
        try:
            result = subprocess.run([*self._ctl, "-q", *args], input=stdin, capture_output=True, text=True,
                                    check=False, timeout=self._timeout)
        except subprocess.TimeoutExpired as exc:
            raise ServiceError(f"rabbitmqctl {args[0]} did not answer within {self._timeout:.0f}s") from exc
        if result.returncode != 0:
            # Only the command's name: its arguments may hold nothing secret, but its output might.
            raise ServiceError(f"rabbitmqctl {args[0]} failed: {(result.stderr or result.stdout).strip()[:300]}")
        return result.stdout

    def _json(self, *args: str) -> list[dict[str, object]]:
        text = self._run(*args, "--formatter", "json").strip()
        rows = json.loads(text) if text else []
        return [row for row in rows if isinstance(row, dict)]

    def user_exists(self, user: str) -> bool:
        return any(row.get("user") == user for row in self._json("list_users"))

    def grant(self, user: str, practice_id: str, vhost: str, password: str | None) -> Granted:
        """Add ``user`` if it does not exist (``password`` is then required) and give it one practice's dashboard.

        An existing user keeps its password unless one is given. A user reads one practice per
        vhost: granting another replaces the first (the result names it).
        """
        commands = grant_commands(user, practice_id, vhost)
        created = not self.user_exists(user)
        if created and not password:
            raise ValueError(f"user {user} does not exist: a password is needed to add it")
        previous = next((d.practice_id for d in self.dashboards(vhost) if d.user == user), None)
        # The password goes on stdin: never on a command line (ps shows those to every user).
        if created:
            self._run("add_user", user, stdin=f"{password}\n")
        elif password:
            self._run("change_password", user, stdin=f"{password}\n")
        for command in commands:
            self._run(*command)
        return Granted(created=created, password_set=bool(password),
                       previous_practice=previous if previous != practice_id else None)

    def revoke(self, user: str, vhost: str, *, delete_user: bool = False) -> None:
        """Take the user's access to ``vhost`` away; with ``delete_user``, remove the user too."""
        check_user(user)
        if delete_user:
            self._run("delete_user", user)
            return
        self._run("clear_topic_permissions", "-p", vhost, user, EVENTS_EXCHANGE)
        self._run("clear_permissions", "-p", vhost, user)

    def dashboards(self, vhost: str) -> list[Dashboard]:
        """Every user with a topic permission on ``paypost.events`` in ``vhost``."""
        return [
            Dashboard(user=str(row["user"]), vhost=vhost, read_pattern=str(row["read"]),
                      practice_id=practice_of(str(row["read"])))
            for row in self._json("list_topic_permissions", "-p", vhost)
            if row.get("exchange") == EVENTS_EXCHANGE
        ]
