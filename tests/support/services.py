"""Where the tests find RabbitMQ and MongoDB, in this order: explicit URLs from the environment
(PAYPOST_TEST_AMQP_URL, PAYPOST_TEST_MONGODB_URI); else testcontainers when a Docker engine
answers; else the local servers, started here when they are not running."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field

from paypost.local.servers import ensure_rabbitmq, temporary_mongod
from tests.support.vhosts import VhostPool, batch_size


def docker_answers() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    try:
        return subprocess.run([docker, "info"], capture_output=True, timeout=10, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@dataclass
class Services:
    mongodb_uri: str
    amqp_url: str
    local_rabbit: bool  # vhosts can be made with rabbitmqctl
    # Each worker of pytest-xdist (PYTEST_XDIST_WORKER_COUNT) keeps its share of the broker's vhosts.
    vhosts: VhostPool = field(default_factory=lambda: VhostPool(
        "paypost-test", batch=batch_size(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))))

    @contextlib.contextmanager
    def vhost(self) -> Iterator[str]:
        """An AMQP URL of a vhost of its own (new, deleted after), when the broker is local; else the shared one."""
        if not self.local_rabbit:
            yield self.amqp_url
            return
        name = self.vhosts.take()
        try:
            yield f"{self.amqp_url.rstrip('/')}/{name}"
        finally:
            self.vhosts.give_back(name)


@contextlib.contextmanager
def find_services() -> Iterator[Services]:
    with contextlib.ExitStack() as stack:
        mongodb_uri = os.environ.get("PAYPOST_TEST_MONGODB_URI")
        amqp_url = os.environ.get("PAYPOST_TEST_AMQP_URL")
        local_rabbit = False
        use_docker = (mongodb_uri is None or amqp_url is None) and docker_answers()
        if mongodb_uri is None:
            if use_docker:
                from testcontainers.mongodb import MongoDbContainer

                mongo = stack.enter_context(MongoDbContainer("mongo:6.0"))
                mongodb_uri = mongo.get_connection_url()
            else:
                mongodb_uri = stack.enter_context(temporary_mongod("paypost-mongo-"))
        if amqp_url is None:
            if use_docker:
                from testcontainers.rabbitmq import RabbitMqContainer

                rabbit = stack.enter_context(RabbitMqContainer("rabbitmq:3.10"))
                params = rabbit.get_connection_params()
                amqp_url = f"amqp://guest:guest@{params.host}:{params.port}/"
            else:
                ensure_rabbitmq()
                amqp_url = "amqp://guest:guest@127.0.0.1:5672/"
                local_rabbit = shutil.which("rabbitmqctl") is not None
        found = Services(mongodb_uri=mongodb_uri, amqp_url=amqp_url, local_rabbit=local_rabbit)
        if local_rabbit:
            stack.callback(found.vhosts.close)  # the vhosts made and not yet deleted
        yield found
