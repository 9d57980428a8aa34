"""Shared pieces of the fault suite: figures every scenario prints, and the accounting."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from paypost.infra.mongo.database import Collections, connect
from paypost.infra.runtime.settings import Settings


def scale(default: int) -> int:
    """Scenario sizes scale with PAYPOST_FAULT_SCALE (1.0 = the issue's sizes)."""
    return max(10, int(default * float(os.environ.get("PAYPOST_FAULT_SCALE", "1.0"))))


@dataclass
class Figures:
    scenario: str
    published: int = 0
    loaded: int = 0
    failed: int = 0
    cleared: int = 0
    pending: int = 0
    double_posts: int = 0
    lost: int = 0

    def line(self) -> str:
        return (f"[fault] {self.scenario}: published={self.published} loaded={self.loaded} failed={self.failed} "
                f"cleared={self.cleared} pending={self.pending} double_posts={self.double_posts} lost={self.lost}")


async def account(c: Collections, scenario: str, payment_ids: list[str], practice: str = "clinic-a",
                  ledger_entries: list[dict[str, Any]] | None = None) -> Figures:
    """Every published payment must be LOADED, FAILED or CLEARED; none may be posted twice."""
    figures = Figures(scenario, published=len(payment_ids))
    found = {d["payment_id"]: d["load_status"] async for d in c.postings.find(
        {"practice_id": practice, "payment_id": {"$in": payment_ids}}, {"payment_id": 1, "load_status": 1})}
    for pid in payment_ids:
        status = found.get(pid)
        if status is None:
            figures.lost += 1
        elif status == "LOADED":
            figures.loaded += 1
        elif status == "FAILED":
            figures.failed += 1
        elif status == "CLEARED":
            figures.cleared += 1
        else:
            figures.pending += 1
    if ledger_entries is None:
        ledger_entries = await c.ledger_entries.find({"practice_id": practice, "refund_id": None},
                                                     {"payment_id": 1}).to_list(None)
    per_payment: dict[str, int] = {}
    for entry in ledger_entries:
        per_payment[entry["payment_id"]] = per_payment.get(entry["payment_id"], 0) + 1
    figures.double_posts = sum(n - 1 for n in per_payment.values() if n > 1)
    # A LOADED posting without its entry, or an entry for a CLEARED posting, is money gone wrong.
    figures.lost += sum(1 for pid, s in found.items() if s == "LOADED" and pid not in per_payment)
    figures.double_posts += sum(1 for pid, s in found.items() if s == "CLEARED" and pid in per_payment)
    return figures


@pytest.fixture
def report(request: pytest.FixtureRequest) -> Iterator[list[Figures]]:
    collected: list[Figures] = []
    yield collected
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():  # pytest always has a capture manager
        for figures in collected:
            print("\n" + figures.line())  # noqa: T201  # the fault suite reports its figures on stdout


async def setup_practice(c: Collections, patients: int = 5) -> None:
    from datetime import UTC, datetime

    await c.practices.update_one({"_id": "clinic-a"}, {"$set": {"name": "A", "ledger": {"kind": "builtin"},
                                                                "enabled": True}}, upsert=True)
    for i in range(patients):
        await c.ehr_patients.update_one({"_id": f"clinic-a/EHR-{i}"},
                                        {"$setOnInsert": {"practice_id": "clinic-a", "ehr_patient_id": f"EHR-{i}",
                                                          "registered_at": datetime.now(UTC)}}, upsert=True)


@pytest.fixture
async def store(settings: Settings) -> Collections:
    client = connect(settings.mongodb_uri)
    c = Collections(client[settings.mongodb_db])
    await setup_practice(c)
    return c
