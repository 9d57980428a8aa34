"""Fixtures of the fault suite: the figures each scenario reports, and its database with a practice."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from paypost.infra.mongo.database import Collections, connect
from paypost.infra.runtime.settings import Settings
from tests.support.faults import Figures, setup_practice


@pytest.fixture
def report(request: pytest.FixtureRequest) -> Iterator[list[Figures]]:
    collected: list[Figures] = []
    yield collected
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():  # pytest always has a capture manager
        for figures in collected:
            print("\n" + figures.line())  # noqa: T201  # the fault suite reports its figures on stdout


@pytest.fixture
async def store(settings: Settings) -> Collections:
    client = connect(settings.mongodb_uri)
    c = Collections(client[settings.mongodb_db])
    await setup_practice(c)
    return c
