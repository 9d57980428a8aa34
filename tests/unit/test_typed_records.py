"""The typed values the ports carry (``paypost.domain.operations``, ``paypost.domain.integrations.Practice``), mapped
from and to the documents infra/ keeps, which stay as they were (documents written before still read)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from paypost.domain.integrations import Practice
from paypost.domain.operations import CLAIMED, Canary, CanaryPhase, CanaryPlan, ClearOrder, verdict_phase
from paypost.infra.mongo.directory import practice_from
from paypost.infra.mongo.operations import canary_from, plan_doc

DEADLINE = datetime(2026, 3, 1, 12, 5, tzinfo=UTC)
PLAN = CanaryPlan(payment_ids=("p-1", "p-2"), rest_retry=("p-3",),
                  rest_clear=(ClearOrder("p-4", "posted by hand", "MAN-1"), ClearOrder("p-5", "dup")),
                  deadline=DEADLINE)


def test_a_canary_is_stored_as_before_and_read_back_as_it_was_planned() -> None:
    stored = plan_doc(PLAN)
    assert stored == {"size": 2, "payment_ids": ["p-1", "p-2"], "rest_retry": ["p-3"],
                      "rest_clear": [{"payment_id": "p-4", "reason": "posted by hand", "manual_reference": "MAN-1"},
                                     {"payment_id": "p-5", "reason": "dup", "manual_reference": None}],
                      "deadline": DEADLINE}
    op = {"_id": "op-1", "practice_id": "clinic-a", "actor": "alice",
          "canary": {**stored, "phase": "stopping", "message": "Not applied: p-2 is FAILED."}}
    assert canary_from(op) == Canary("op-1", "clinic-a", "alice", PLAN, CanaryPhase.STOPPING,
                                     "Not applied: p-2 is FAILED.")


def test_a_verdict_is_claimed_in_a_phase_a_stale_sweep_takes_over() -> None:
    assert verdict_phase(True) is CanaryPhase.PROCEEDING
    assert verdict_phase(False) is CanaryPhase.STOPPING
    assert {verdict_phase(True), verdict_phase(False)} == CLAIMED


def test_a_practice_is_read_from_its_document() -> None:
    doc: dict[str, Any] = {"_id": "clinic-a", "name": "A", "enabled": True, "updated_at": DEADLINE,
           "ledger": {"kind": "http", "base_url": "https://pms.example", "auth": {"kind": "bearer", "sealed": "x"}}}
    assert practice_from(doc) == Practice("clinic-a", "A", doc["ledger"], True)
    assert practice_from({"_id": "clinic-b"}) == Practice("clinic-b", "", {}, False)
